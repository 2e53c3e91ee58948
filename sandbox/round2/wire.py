"""Round two, class 7b: the wire. One client must not be able to take from the others.

Each entry names a test of tests/test_hostile_round2.py that plays it against a real server
(they are messages and sequences of messages, not query sources).
"""

CASES = [
    {
        "name": "many-frames",
        "why": "a multipart message of 1,000 frames: answered with an "
        "error, and the server keeps no more than 11 of its frames",
    },
    {
        "name": "queue-flood",
        "why": "one client queues 100 requests behind a held lock: its "
        "65th is refused, another client's request still queues and runs",
    },
    {
        "name": "reply-cache-eviction",
        "why": "one client's large write replies overflow the "
        "reply cache: another client's remembered write reply must survive, so its resend is "
        "answered from the cache and does not run the write twice",
    },
    {
        "name": "lock-hog",
        "why": "a lock holder that keeps renewing its lease loses the lock after --lock-max-hold",
    },
]
