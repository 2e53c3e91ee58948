# mode: execute
# expect: LimitExceeded
# why: each field is small, their sum is not
s = 'x' * 3000000
f'{s}{s}{s}{s}{s}{s}{s}{s}'
