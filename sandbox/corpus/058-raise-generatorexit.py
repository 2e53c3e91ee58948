# mode: execute
# expect: SecurityError
# why: GeneratorExit is a BaseException
raise GeneratorExit
