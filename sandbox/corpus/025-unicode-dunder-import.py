# mode: query
# expect: SecurityError
# why: a fullwidth __import__ is still __import__ once normalised
__ｉｍｐｏｒｔ__('os')
