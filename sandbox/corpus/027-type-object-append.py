# mode: execute
# expect: SecurityError
# why: list.append on the type object would mutate a stored list without the tracked override
list.append(db['l'], 1)
