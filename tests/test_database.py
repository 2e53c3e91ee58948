"""Behaviour of the public interface, against every kind of database (the `db` fixture)."""

from __future__ import annotations

import threading

import pytest

import pyzdb


def test_seed_sample_session(db, restart):
    """The original README's session, step by step, with the answers it promised; then the
    data after a restart (the remote kind: the server's, with the client still connected)."""
    assert db.get() == {}
    db["x"] = 3
    assert db["x"].get() == 3
    db["l"] = list(range(10))
    assert db.get() == {"x": 3, "l": list(range(10))}
    db["l"][4] = ["a", "b", "c"]
    assert db.undo() is True
    assert db.get() == {"x": 3, "l": list(range(10))}
    assert db.undo() is True
    assert db.redo() is True
    assert db.redo() is True
    assert db.get() == {"x": 3, "l": [0, 1, 2, 3, ["a", "b", "c"], 5, 6, 7, 8, 9]}
    assert [v for v in db["l"][4]] == ["a", "b", "c"]
    assert [k for k in db] == ["x", "l"]
    db["l"][4].append("d")
    assert db["l"][4].get() == ["a", "b", "c", "d"]
    db.save()
    assert db["x"]._run() == 3
    db = restart()
    assert db["l"][4].get() == ["a", "b", "c", "d"]
    assert db.get() == {"x": 3, "l": [0, 1, 2, 3, ["a", "b", "c", "d"], 5, 6, 7, 8, 9]}


def test_query_is_one_expression_and_returns_its_value(db):
    db["l"] = list(range(10))
    assert db.query("[v*v for v in db['l'] if v % 2]") == [1, 9, 25, 49, 81]
    assert db.query(lambda db: sum(db["l"])) == 45


def test_query_parameters_are_bound_as_names(db):
    db["u"] = [{"n": "a", "age": 3}, {"n": "b", "age": 30}]
    assert db.query("[u['n'] for u in db['u'] if u['age'] > limit]", limit=10) == ["b"]


def test_execute_returns_the_last_expression_statement(db):
    assert db.execute("db['a'] = 2\ndb['a'] * 21") == 42
    assert db.execute("db['b'] = 1") is None
    assert db["b"].get() == 1


def test_a_write_inside_a_query_is_refused_and_changes_nothing(db):
    db["l"] = [1]
    with pytest.raises(pyzdb.SecurityError):
        db.query("db['l'].append(2)")
    with pytest.raises(pyzdb.SecurityError):
        db.query("db.clear()")
    assert db.get() == {"l": [1]}


def test_query_exceptions_keep_their_builtin_type_and_position(db):
    db["d"] = {}
    with pytest.raises(KeyError) as caught:
        db.query("db['d']['missing']")
    assert caught.value.args == ("missing",)
    assert any("line 1" in note for note in getattr(caught.value, "__notes__", []))
    with pytest.raises(ZeroDivisionError):
        db.execute("x = 1\ny = x / 0")
    with pytest.raises(IndexError):
        db.query("[][3]")


def test_a_failed_execute_changes_nothing(db):
    db["a"] = {"n": 1}
    with pytest.raises(ZeroDivisionError):
        db.execute("db['a']['n'] = 2\ndb['b'] = [1, 2]\n1 / 0")
    assert db.get() == {"a": {"n": 1}}
    assert db.undo() is True
    assert db.get() == {}


def test_syntax_errors_are_raised_before_anything_runs(db):
    with pytest.raises(SyntaxError):
        db.execute("db['x'] = = 3")
    assert db.get() == {}


def test_unstorable_values_are_refused_with_type_and_path(db):
    db["a"] = {"b": []}
    with pytest.raises(TypeError) as caught:
        db.execute("db['a']['b'].append({1, 2})")
    assert "set" in str(caught.value)
    assert db.get() == {"a": {"b": []}}


def test_types_round_trip_type_for_type(db):
    value = {1: (1, 2), (1, "a"): b"\x00\xff", "f": 1.5, "n": None, "t": True, "big": 2**100}
    db["v"] = value
    back = db["v"].get()
    assert back == value
    assert [type(k) for k in back] == [type(k) for k in value]
    assert type(back[1]) is tuple and type(back[(1, "a")]) is bytes


def test_path_proxy_reads(db):
    db["d"] = {"a": 1, "b": [1, 2, 3]}
    assert len(db["d"]) == 2
    assert "a" in db["d"] and "z" not in db["d"]
    assert "d" in db and "zz" not in db
    assert list(db["d"]) == ["a", "b"]
    assert db["d"].keys() == ["a", "b"]
    assert db["d"].items() == [("a", 1), ("b", [1, 2, 3])]
    assert db["d"].get("a") == 1
    assert db["d"].get("zz", 7) == 7
    assert db["d"]["b"][-1].get() == 3
    assert len(db) == 1


def test_path_proxy_writes_return_method_results(db):
    db["l"] = [3, 1, 2]
    assert db["l"].pop() == 2
    db["l"].sort(reverse=True)
    assert db["l"].get() == [3, 1]
    db["c"] = 0
    db["c"] += 5
    db["l"] += [9]
    assert db["c"].get() == 5
    assert db["l"].get() == [3, 1, 9]
    del db["l"][0]
    del db["c"]
    assert db.get() == {"l": [1, 9]}


def test_augmented_proxy_assignment_is_one_unit(db):
    db["c"] = 1
    db["c"] += 1
    assert db["c"].get() == 2
    assert db.undo() is True
    assert db["c"].get() == 1


def test_undo_and_redo_follow_units(db):
    db["a"] = 1
    db.execute("db['a'] += 1\ndb['b'] = [1]")
    assert db.undo() is True
    assert db.get() == {"a": 1}
    assert db.redo() is True
    assert db.get() == {"a": 2, "b": [1]}
    assert db.redo() is False
    db.undo()
    db["z"] = 0
    assert db.redo() is False, "a new write clears redo"


def test_undo_restores_key_order(db):
    db["d"] = {"a": 1, "b": 2, "c": 3}
    del db["d"]["b"]
    db.undo()
    assert list(db["d"].get()) == ["a", "b", "c"]


def test_history_lists_units_with_their_source(db):
    db.execute("db['h'] = 1")
    labels = [entry["label"] for entry in db.history()]
    assert any("db['h'] = 1" in label for label in labels)


def test_transaction_is_one_unit_and_rolls_back_on_exception(db):
    db["n"] = 0
    with db.transaction():
        db["n"] = db["n"].get() + 1
        db["m"] = 5
    assert db.get() == {"n": 1, "m": 5}
    db.undo()
    assert db.get() == {"n": 0}
    with pytest.raises(RuntimeError):
        with db.transaction():
            db["n"] = 100
            raise RuntimeError("client-side failure")
    assert db.get() == {"n": 0}


def test_lock_unlock_like_the_seed(db):
    db["x"] = 1
    db.lock()
    x = db["x"]._run()
    db["x"] = x + 1
    db.unlock()
    assert db["x"].get() == 2


def test_a_failed_request_inside_a_transaction_keeps_the_earlier_ones(db):
    with db.transaction():
        db["a"] = 1
        with pytest.raises(KeyError):
            db.execute("db['b'] = 2\ndb['nope']")
        db["c"] = 3
    assert db.get() == {"a": 1, "c": 3}


def test_budget_overruns_raise_limit_exceeded_and_change_nothing(db):
    db["l"] = [1]
    with pytest.raises(pyzdb.LimitExceeded):
        db.execute("db['l'].append(1)\n'x' * 10**12")
    with pytest.raises(pyzdb.LimitExceeded):
        db.query("sum(range(10**12))")
    assert db.get() == {"l": [1]}
    assert db.query("len(db['l'])") == 1


def test_files_are_stored_as_blobs(db, tmp_path):
    source = tmp_path / "photo.bin"
    source.write_bytes(b"\x89PNG" + bytes(range(256)))
    db["f"] = pyzdb.File(str(source))
    stored = db["f"].get()
    assert isinstance(stored, pyzdb.File)
    assert stored.name == "photo.bin"
    assert stored.size == 260
    assert stored.read() == source.read_bytes()


def test_results_are_copies_not_live_views(db):
    db["l"] = [[1]]
    value = db["l"].get()
    value[0].append(2)
    assert db["l"].get() == [[1]]


def test_threads_share_one_database(db):
    db["c"] = 0

    def work() -> None:
        for _ in range(50):
            db.execute("db['c'] += 1")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert db["c"].get() == 200


def test_restart_keeps_everything(data_dir):
    with pyzdb.open(data_dir) as db:
        db["a"] = {"k": [1, (2, 3)], 5: b"x"}
        db["l"] = list(range(5))
        db.checkpoint()
        db["l"].append(5)
        db.execute("db['a']['k'].pop(0)")
        before = db.get()
    with pyzdb.open(data_dir) as db:
        assert db.get() == before
        assert db.recovery.records_replayed == 2


def test_undo_is_durable(data_dir):
    with pyzdb.open(data_dir) as db:
        db["a"] = 1
        db["a"] = 2
        db.undo()
    with pyzdb.open(data_dir) as db:
        assert db["a"].get() == 1


def test_a_second_process_cannot_open_the_same_directory(data_dir):
    with pyzdb.open(data_dir):
        with pytest.raises(pyzdb.Error):
            pyzdb.open(data_dir)
