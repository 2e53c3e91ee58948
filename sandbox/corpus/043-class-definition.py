# mode: execute
# expect: SecurityError
# why: a class statement reaches type objects and metaclasses
class A:
    pass
A
