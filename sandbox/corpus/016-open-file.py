# mode: query
# expect: SecurityError
# why: no I/O: files belong to the host
open('/etc/passwd').read()
