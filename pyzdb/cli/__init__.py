"""The console scripts: `pyzdb` (REPL), `pyzdb-eval`, `pyzdb-bench`, `pyzdb-recover`.

Kept empty on purpose: each script imports only its own modules (the REPL loads the sandbox's
rules, `pyzdb-bench` spawns client processes), so this `__init__` re-exports nothing. The map of
the modules is README.md beside it.
"""
