# mode: query
# expect: SecurityError
# why: encode() with a codec name outside the small list (codecs import modules; error handlers can be custom code)
'x'.encode('rot13')
