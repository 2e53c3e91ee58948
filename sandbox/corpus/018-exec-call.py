# mode: execute
# expect: SecurityError
# why: exec compiles new code outside the policy
exec('x = 1')
