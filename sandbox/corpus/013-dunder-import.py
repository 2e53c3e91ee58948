# mode: query
# expect: SecurityError
# why: __import__ loads any module
__import__('os').system('id')
