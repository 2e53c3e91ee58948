# mode: query
# expect: SecurityError
# why: fullwidth letters are NFKC-normalised to 'eval' by the tokenizer; the source is parsed server-side
ｅｖａｌ('1')
