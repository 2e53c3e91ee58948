# mode: query
# expect: SecurityError
# why: eval compiles new code outside the policy
eval('1 + 1')
