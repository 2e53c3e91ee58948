# mode: query
# expect: SecurityError
# why: format_map does the same field traversal with a mapping
'{x.__class__}'.format_map({'x': db})
