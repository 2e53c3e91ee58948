# mode: query
# expect: SecurityError
# why: an alias made with := is still the stored list
# requires: store
(l := db['l']).extend([9])
