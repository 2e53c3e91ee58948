"""The console scripts: `pyzdb` (REPL), `pyzdb-eval`, `pyzdb-bench`, `pyzdb-recover`."""
