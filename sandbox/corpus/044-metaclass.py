# mode: execute
# expect: SecurityError
# why: a metaclass runs code when the class is created
class A(metaclass=len):
    pass
