"""The one GC pause: nesting within a thread and across threads, and the application's choice.

The GC is turned back on only when the last pause ends, and only if a pause turned it off.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from pyzdb import gcpause
from pyzdb.gcpause import gc_paused, pause_gc, resume_gc


@pytest.fixture(autouse=True)
def gc_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    assert not gcpause._active, "a pause was left open"
    if not was:
        gc.disable()


def test_nested_pauses_turn_the_gc_back_on_only_when_the_outermost_ends() -> None:
    with gc_paused:
        pause_gc()  # a bulk walk inside another (a freeze inside a decode, say)
        with gc_paused:
            assert not gc.isenabled()
        assert not gc.isenabled()
        resume_gc()
        assert not gc.isenabled()  # the inner pauses ended, the outer one still holds
    assert gc.isenabled()


def test_a_gc_the_application_turned_off_stays_off() -> None:
    gc.disable()
    with gc_paused:
        pause_gc()
        resume_gc()
    assert not gc.isenabled()
    gc.enable()
    with gc_paused:
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_exception_ends_the_pause() -> None:
    with pytest.raises(RuntimeError):
        with gc_paused:
            raise RuntimeError("a walk failed")
    assert gc.isenabled()


def test_a_pause_ending_in_one_thread_does_not_end_another_threads_pause() -> None:
    # The bug the single pause fixes: two pausers, each restoring what it saw, so the one that
    # ended first turned the GC back on under the other one's walk.
    entered, release_first, first_done = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with gc_paused:
            entered.set()
            release_first.wait()
        first_done.set()

    thread = threading.Thread(target=first)
    thread.start()
    entered.wait()
    with gc_paused:
        release_first.set()
        first_done.wait()
        seen.append(gc.isenabled())  # the first pause ended: this one still holds
    thread.join()
    assert seen == [False]
    assert gc.isenabled()


def test_many_threads_pausing_at_once_leave_the_gc_on() -> None:
    def work() -> None:
        for i in range(2000):
            if i % 2:
                with gc_paused:
                    with gc_paused:
                        pass
            else:
                pause_gc()
                resume_gc()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gc.isenabled()
