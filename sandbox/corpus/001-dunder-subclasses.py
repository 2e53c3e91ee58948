# mode: query
# expect: SecurityError
# why: the classic escape: walk from any object to object.__subclasses__() and find a class with os in its globals
().__class__.__bases__[0].__subclasses__()
