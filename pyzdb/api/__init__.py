"""What embedded and remote databases share on the caller's side: capture, the path proxy, watches.

No sandbox, no store, no sockets: both `pyzdb.open` and `pyzdb.connect` build on it.
"""
