# mode: query
# expect: SecurityError
# why: a fullwidth attribute name normalises to __class__
db.__ｃｌａｓｓ__
