# mode: execute
# expect: SecurityError
# why: import gives modules with process-wide state (os, random.seed)
import os
os.system('id')
