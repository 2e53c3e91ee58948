# mode: query
# expect: SecurityError
# why: getattr with a computed name would bypass the compile-time attribute check
getattr(db, '__cl' + 'ass__')
