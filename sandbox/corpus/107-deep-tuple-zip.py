# mode: execute
# expect: SecurityError
# why: zip builds tuples in C
z = 0
for i in range(200000):
    z = list(zip([z]))[0]
{z}
