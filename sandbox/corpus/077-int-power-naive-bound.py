# mode: query
# expect: LimitExceeded
# why: an 'exponent < N' check passes this; a.bit_length() * b does not
4000000**4000000
