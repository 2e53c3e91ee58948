"""Scoped keys: for a key with `--scope PATH`, `db` *is* that subtree, by every route.

Each test seeds two tenants (acme, globex) and global data with an unscoped key, then tries a
route out of acme's subtree with acme's key and checks that nothing of globex or of the global
data comes back (in values, errors, notes or history) and that nothing outside changed.
"""

from __future__ import annotations

import marshal
import time
from collections.abc import Iterator

import pytest
from corpus import SEED, load_corpus
from keyed import Keyring, seed_tenants

import pyzdb
from pyzdb.api.capture import CaptureError
from pyzdb.plain import freeze

TIMEOUT = 10.0
#: Strings that live outside acme's subtree: none may ever reach acme's key.
OUTSIDE = ("globex", "global-secret-0815", "globex-secret-4711", "tenants", "admin-password")


@pytest.fixture(scope="module")
def keyring(tmp_path_factory) -> Keyring:
    return Keyring(tmp_path_factory.mktemp("scoped"))


@pytest.fixture
def server(keyring, data_dir):
    with keyring.server(data_dir, "--scoped-steps", "200000") as process:
        yield process


@pytest.fixture
def admin(server, keyring) -> Iterator[pyzdb.Database]:
    with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("admin")) as db:
        seed_tenants(db)
        yield db


@pytest.fixture
def acme(server, keyring, admin) -> Iterator[pyzdb.Database]:
    with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("acme")) as db:
        yield db


def _leaks(text: str, source: str = "") -> list[str]:
    """The outside words in `text` that the request did not itself contain."""
    return [word for word in OUTSIDE if word in text and word not in source]


def _error_text(error: BaseException) -> str:
    return " ".join([str(error), repr(error.args), *getattr(error, "__notes__", ())])


def test_db_is_the_subtree(acme, admin):
    assert acme.query("db") == {"orders": [1, 2, 3], "name": "ACME"}
    assert acme.query("[k for k in db]") == ["orders", "name"]
    assert acme.query("list(db.items())") == [("orders", [1, 2, 3]), ("name", "ACME")]
    assert acme.query("len(db)") == 2
    assert acme.get() == {"orders": [1, 2, 3], "name": "ACME"}
    assert list(acme["orders"]) == [1, 2, 3]
    assert "tenants" not in acme and "orders" in acme
    acme["orders"].append(4)
    acme.execute("db['note'] = 'hi'")
    assert admin.query("db['tenants']['acme']") == {
        "orders": [1, 2, 3, 4],
        "name": "ACME",
        "note": "hi",
    }
    assert admin.query("db['tenants']['globex']")["orders"] == [7]


@pytest.mark.parametrize(
    "source",
    [
        "db['tenants']",
        "db['globex']",
        "db['config']",
        "db._parent",
        "db.__class__",
        "[v for v in db.values() for v in v]",
        "db['orders'].__self__",
        "type(db)",
        "getattr(db, '_parent')",
        "db['name'].format_map(db)",
        "'{0._parent}'.format(db)",
    ],
)
def test_no_route_leads_out_of_the_subtree(acme, source):
    try:
        value = acme.query(source)
    except (
        pyzdb.Error,
        LookupError,
        TypeError,
        ValueError,
        NameError,
        AttributeError,
        SyntaxError,
        CaptureError,
    ) as error:
        assert not _leaks(_error_text(error), source), _error_text(error)
    else:
        assert not _leaks(repr(value)), value


def test_stored_references_are_copies_and_lead_nowhere(acme, admin):
    acme.execute("db['me'] = db\ndb['orders2'] = db['orders']")
    inside = acme.query("db['me']")
    assert not _leaks(repr(inside))
    assert acme.query("[k for k in db['me']]") == ["orders", "name"]
    assert not _leaks(repr(acme.query("[(k, v) for k, v in db.items()]")))


def test_errors_and_notes_speak_of_the_subtree_only(acme):
    with pytest.raises(TypeError) as info:
        acme.execute("db['s'] = {1, 2}")
    assert "db['s']" in str(info.value) and not _leaks(_error_text(info.value))
    with pytest.raises(KeyError) as missing:
        acme.query("db['orders'][0] + db['nope']")
    assert not _leaks(_error_text(missing.value))
    with pytest.raises(pyzdb.LimitExceeded) as deep:
        acme.execute("x = []\nfor i in range(300):\n    x = [x]\ndb['deep'] = x")
    assert not _leaks(_error_text(deep.value))


def test_history_shows_only_this_keys_own_units(server, keyring, acme, admin):
    admin.execute("db['config']['admin-password'] = 'global-secret-0815-changed'")
    acme.execute("db['mine'] = 1")
    with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("globex")) as globex:
        globex.execute("db['secret'] = 'globex-secret-4711 v2'")
    history = acme.history()
    assert [unit["label"] for unit in history] == ["db['mine'] = 1"]
    assert not _leaks(repr(history))
    labels = [unit["label"] for unit in admin.history()]
    assert "[key acme] db['mine'] = 1" in labels  # an unscoped key sees who did what


def test_undo_takes_back_only_this_keys_newest_unit(server, keyring, acme, admin):
    acme.execute("db['a'] = 1")
    assert acme.undo() is True
    assert "a" not in acme
    assert acme.redo() is True
    assert acme.query("db['a']") == 1
    with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("globex")) as globex:
        globex.execute("db['g'] = 1")
        with pytest.raises(pyzdb.SecurityError, match="another key's unit came after"):
            acme.undo()
        assert globex.query("db['g']") == 1  # the other tenant's unit stayed
        assert acme.query("db['a']") == 1
        assert globex.undo() is True
    assert acme.undo() is True  # its own unit is the newest again
    assert "a" not in acme
    with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("globex")) as globex:
        assert globex.undo() is False  # nothing of its own left (acme's unit is not its own)


def test_blobs_of_other_tenants_cannot_be_read_by_digest(acme, admin):
    secret = pyzdb.File(data=b"globex blueprint", name="plan.bin")
    admin.execute("db['tenants']['globex']['plan'] = f", f=secret)
    digest = admin.query("db['tenants']['globex']['plan']").digest
    acme.execute("db['logo'] = f", f=pyzdb.File(data=b"acme logo", name="logo.png"))
    assert acme.query("db['logo']").read() == b"acme logo"
    with pytest.raises(pyzdb.Error) as stolen:
        acme._send("blob", source=digest)
    with pytest.raises(pyzdb.Error) as unknown:
        acme._send("blob", source="0" * 64)
    assert str(stolen.value) == str(unknown.value)  # no oracle for other tenants' digests
    assert b"blueprint" not in repr(stolen.value).encode()


def test_a_missing_scope_is_refused_clearly(server, keyring):
    with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("acme")) as acme:
        with pytest.raises(pyzdb.SecurityError, match="scope does not exist"):
            acme.query("len(db)")
        with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("admin")) as admin:
            admin.execute("db['tenants'] = {'acme': 5}")
            with pytest.raises(pyzdb.SecurityError, match="not a dict"):
                acme.execute("db['x'] = 1")
            assert admin.query("db['tenants']") == {"acme": 5}


def test_scoped_read_keys_cannot_write_even_inside_their_scope(server, keyring, admin):
    with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("acme-reader")) as reader:
        assert reader.query("db['name']") == "ACME"
        with pytest.raises(pyzdb.SecurityError, match="needs the write role"):
            reader.execute("db['name'] = 'x'")
    assert admin.query("db['tenants']['acme']['name']") == "ACME"


def test_scoped_requests_have_their_own_budget(acme, admin):
    loop = "s = 0\nfor i in range(1000000):\n    s += i\ns"
    with pytest.raises(pyzdb.LimitExceeded) as info:
        acme.execute(loop)
    assert info.value.budget == "steps"
    assert admin.execute(loop) == sum(range(1000000))  # unscoped keys keep the global budget


def test_a_scoped_key_holds_the_lock_one_lease_at_most(keyring, data_dir):
    with keyring.server(data_dir, "--lease", "1") as server:
        with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("admin")) as admin:
            seed_tenants(admin)
            admin.lock()  # an unscoped key: heartbeats keep the lock past one lease
            time.sleep(1.6)
            admin.execute("db['held'] = True")
            admin.unlock()
            with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("acme")) as acme:
                acme.lock()
                acme.execute("db['in-txn'] = 1")
                time.sleep(1.6)  # heartbeats run, but the hold ends after one lease
                with pytest.raises(pyzdb.LockTimeout):
                    acme.unlock()
                assert "in-txn" not in acme  # rolled back
                assert admin.query("db['held']") is True


# -- the hostile corpus under a scoped write key ------------------------------------------------

CASES = load_corpus()
EXPECTED_TYPES: dict[str, type[BaseException]] = {
    "SecurityError": pyzdb.SecurityError,
    "LimitExceeded": pyzdb.LimitExceeded,
    "SyntaxError": SyntaxError,
    "Error": pyzdb.Error,
    "RecursionError": RecursionError,
}


@pytest.fixture(scope="module")
def corpus_server(keyring, tmp_path_factory):
    with (
        keyring.server(tmp_path_factory.mktemp("corpus") / "data") as process,
        pyzdb.connect(process.uri, timeout=30.0, key=keyring.key("admin")) as admin,
    ):
        seed_tenants(admin)
        admin.execute("db['tenants']['acme'].update(seed)", seed=SEED)
        with pyzdb.connect(process.uri, timeout=30.0, key=keyring.key("acme")) as acme:
            yield admin, acme
        assert process.alive(), "the server died during the hostile replay"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_hostile_corpus_cannot_escape_a_scoped_write_key(corpus_server, case):
    """Every hostile input sent with acme's key is refused as it is without a scope, leaves
    the *whole* tree unchanged (read with the admin key), leaks nothing from outside, and the
    next request is served."""
    admin, acme = corpus_server
    before = marshal.dumps(freeze(admin.get()), 2)
    run = acme.query if case.mode == "query" else acme.execute
    with pytest.raises((EXPECTED_TYPES[case.expect], SyntaxError, CaptureError)) as info:
        run(case.source)
    assert not _leaks(_error_text(info.value), case.source), _error_text(info.value)
    assert marshal.dumps(freeze(admin.get()), 2) == before, f"{case.name} changed the tree"
    assert acme.query("len(db['l']) + db['x']") == 4, "the next request was not served"


# -- watch and info ------------------------------------------------------------------------------


def _watch_take(db: pyzdb.Database, path: str, n: int, since: int | None = None) -> tuple:
    watch = db.watch(path, since=since)
    return [next(watch) for _ in range(n)], watch


def test_a_scoped_watch_sees_its_subtree_with_relative_paths(server, keyring, acme, admin):
    (initial,), watch = _watch_take(acme, "db", 1)
    assert initial.op == "initial" and initial.path == ()
    assert initial.new == {"orders": [1, 2, 3], "name": "ACME"}
    admin.execute("db['tenants']['globex']['secret'] = 'globex-secret-4711 v2'")
    admin.execute("db['config']['x'] = 'global-secret-0815'")
    acme["orders"].append(4)
    acme.execute("db['note'] = 'hi'")
    changes = [next(watch), next(watch)]
    assert [(c.path, c.op, c.old, c.new) for c in changes] == [
        (("orders", 3), "insert", None, 4),
        (("note",), "insert", None, "hi"),
    ]
    # Replaced from above: the scope's value changes; nothing of globex or the root leaks.
    admin.execute("db['tenants'] = {'acme': {'v': 2}, 'globex': {'secret': 'globex-secret'}}")
    admin.execute("del db['tenants']['globex']")
    admin.execute("db['tenants']['acme']['w'] = 3")
    replaced, added = next(watch), next(watch)
    assert (replaced.path, replaced.op, replaced.new) == ((), "set", {"v": 2})
    assert replaced.old == {"orders": [1, 2, 3, 4], "name": "ACME", "note": "hi"}
    assert (added.path, added.op, added.new) == (("w",), "insert", 3)
    assert not _leaks(repr([*changes, replaced, added]))
    # Resume with since=: no gap, no repeat, still relative.
    resumed = acme.watch("db", since=changes[-1].seq)
    again = [next(resumed), next(resumed)]
    assert [(c.path, c.op, c.new) for c in again] == [((), "set", {"v": 2}), (("w",), "insert", 3)]
    admin.execute("del db['tenants']")
    gone = next(resumed)
    assert (gone.path, gone.op, gone.new) == ((), "delete", None)


def test_a_scoped_watch_of_a_deeper_path_and_the_raw_reply_leaks_nothing(
    server, keyring, acme, admin
):
    (initial,), watch = _watch_take(acme, "db['orders']", 1)
    assert (initial.path, initial.new) == (("orders",), [1, 2, 3])
    start = initial.seq
    admin.execute("db['tenants']['globex']['orders'].append(8)")
    admin.execute("db['tenants'] = dict(db['tenants'])")  # a parent replaced, same values
    admin.execute("db['tenants']['acme']['orders'][0] = 10")
    same, change = next(watch), next(watch)  # the parent's rewrite: the same value, as unscoped
    assert (same.path, same.op, same.old, same.new) == (("orders",), "set", [1, 2, 3], [1, 2, 3])
    assert (change.path, change.op, change.old, change.new) == (("orders", 0), "set", 1, 10)
    # What crosses the wire for this key: the effects themselves hold no outside key or value.
    raw = acme._send("watch", params={"path": [], "since": start, "base": True})
    assert not _leaks(repr(raw)), raw
    with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("globex")) as globex:
        (mine,), _ = _watch_take(globex, "db", 1)
        assert "acme" not in repr(mine.new) and mine.new["orders"] == [7, 8]


def test_a_scoped_watch_follows_a_list_moved_above_its_scope(tmp_path):
    keyring = Keyring(tmp_path / "own")
    keyring.add("listed", "read", "db['rows'][1]")
    with keyring.server(tmp_path / "data") as server:
        with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("admin")) as admin:
            admin.execute("db['rows'] = [{'n': 'zero'}, {'n': 'one'}, {'n': 'two'}]")
            _follow_moved(server, keyring, admin)


def _follow_moved(server, keyring, admin) -> None:
    with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("listed")) as listed:
        (initial,), watch = _watch_take(listed, "db", 1)
        assert initial.new == {"n": "one"}
        admin.execute("db['rows'].insert(0, {'n': 'new'})")
        moved = next(watch)
        assert (moved.path, moved.op, moved.old, moved.new) == (
            (),
            "set",
            {"n": "one"},
            {"n": "zero"},
        )
        admin.checkpoint()  # the journal replay behind a move starts at a checkpoint now
        admin.execute("db['rows'].insert(0, {'n': 'newer'})\ndb['rows'][1]['m'] = 1")
        again = next(watch)
        assert (again.path, again.op, again.new) == ((), "set", {"n": "new", "m": 1})


def test_a_scoped_info_tells_only_its_own_subtree(acme, keyring, server):
    info = acme.info()
    assert set(info) == {"server", "key", "tree"}
    assert info["server"] == {"version": pyzdb.__version__}
    assert info["key"] == {"name": "acme", "role": "write", "scope": "db['tenants']['acme']"}
    assert info["tree"]["exists"] is True and info["tree"]["top_level_keys"] == 2
    assert 0 < info["tree"]["approx_bytes"] < 10_000
    outside = dict(info, key=None)  # its own scope names the path to it, by design
    assert not _leaks(repr(outside)) and str(server.data_dir) not in repr(info)
    with pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key("acme-reader")) as reader:
        assert reader.info()["key"]["role"] == "read"
