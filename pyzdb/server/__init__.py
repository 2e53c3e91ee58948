"""`pyzdb-server`: the ZeroMQ loop, its supervisor, locks, auth, feeds and replicas."""
