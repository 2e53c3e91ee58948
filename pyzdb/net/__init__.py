"""The wire and the client side of it: messages, `pyzdb.connect` (sync and asyncio), keys.

Never imports `sandbox`, `storage`, the engine or `server`: a client loads no RestrictedPython.
"""
