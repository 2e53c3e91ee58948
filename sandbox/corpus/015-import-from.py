# mode: execute
# expect: SecurityError
# why: from-import is an import
from os import system
system('id')
