# mode: query
# expect: SecurityError
# why: type() reaches type objects, whose attributes mutate stored containers behind the guards
type(db['l']).append(db['l'], 1)
