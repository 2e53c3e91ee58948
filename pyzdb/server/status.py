"""The server's `info` op: `db.info()` over the wire.

The engine's sections (`pyzdb.info`, shared with the embedded database) plus this server's:
where it listens, its lease, its clients and the lock, the journal's seqs, and a
``replication`` section (the replicas of a primary, or a replica's stream). A scoped key gets
far less (`pyzdb.server.tenancy`). Add a feature's section here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyzdb.info import engine_sections

if TYPE_CHECKING:
    from pyzdb.server.loop import Server


def info_sections(server: Server) -> dict[str, dict[str, Any]]:
    """`db.info()` of `server`: the engine's sections plus the server's and the stream's."""
    engine, journal, locks = server.engine, server.engine.journal, server.locks
    role = "primary" if server.follower is None else "replica"
    sections = engine_sections(engine, role, server.stats.started)
    sections["server"]["bind"] = server.public
    sections["server"]["front"] = server.config.front
    sections["server"]["lease_seconds"] = server.config.lease
    sections["clients"] = server.stats.section()
    sections["clients"]["lock_holder"] = locks.holder.hex() if locks.holder else None
    sections["clients"]["queued"] = len(locks.queue)
    sections["server"].update(
        {
            "seq": engine.last_seq,
            "durable_seq": journal.durable_seq,
            "first_retained_seq": journal.first_seq,
            "retain_journal": journal.retain,
        }
    )
    sections["replication"] = server.hub.replication_info()
    return sections


__all__ = ["info_sections"]
