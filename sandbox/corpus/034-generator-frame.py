# mode: query
# expect: SecurityError
# why: gi_frame.f_back.f_globals walks out of the generator to the engine's frames
(x for x in []).gi_frame.f_back.f_globals
