# mode: execute
# expect: SecurityError
# why: string.Formatter().format reaches attributes without str.format
import string
string.Formatter().format('{0.__class__}', db)
