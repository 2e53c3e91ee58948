"""The sandbox: RestrictedPython policy and compile, running a request, budgets and guards.

Imports only `errors`, `limits` and `values` from pyzdb: it knows no store, no engine, no socket.
"""
