"""Ctrl-C in the training loop (`safjax.ctrl_c`): a KeyboardInterrupt that Python swallows (raised
inside a garbage-collection callback, as JAX's runs often) is remembered and prints nothing; a
save defers it to its end."""

import contextlib
import gc
import os
import signal

import pytest

from safjax import ctrl_c


@pytest.fixture
def python_ctrl_c():
    """SIGINT handled by Python, as in a terminal (a background job may have it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _collected_unraisable(monkeypatch) -> list:
    seen = []
    monkeypatch.setattr("sys.unraisablehook", seen.append)
    return seen


@contextlib.contextmanager
def _ctrl_c_inside_the_next_gc_callback():
    """Yields a list that the next garbage collection's callback fills after sending SIGINT to this
    process from inside itself, so that Python raises KeyboardInterrupt there and swallows it."""
    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(1000))  # Python runs the handler here, inside the callback

    gc.callbacks.append(callback)
    try:
        yield fired
    finally:
        gc.callbacks.remove(callback)


def test_a_ctrl_c_swallowed_by_a_gc_callback_is_kept_and_prints_nothing(python_ctrl_c, monkeypatch):
    unraisable = _collected_unraisable(monkeypatch)
    with _ctrl_c_inside_the_next_gc_callback() as fired, ctrl_c.kept() as interrupt:
        gc.collect()
        assert fired and interrupt.received
    assert unraisable == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_kept_the_same_ctrl_c_is_lost(python_ctrl_c, monkeypatch):
    """What `kept` is for: Python alone loses the interrupt and reports it as unraisable."""
    unraisable = _collected_unraisable(monkeypatch)
    with _ctrl_c_inside_the_next_gc_callback() as fired:
        gc.collect()  # no KeyboardInterrupt reaches here
    assert fired and [info.exc_type for info in unraisable] == [KeyboardInterrupt]


def test_a_save_defers_ctrl_c_to_its_end_and_the_loop_still_knows(python_ctrl_c):
    saved = []
    with ctrl_c.kept() as interrupt:
        with pytest.raises(KeyboardInterrupt):
            with ctrl_c.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                sum(range(1000))
                saved.append(True)  # reached: the interrupt waits for the end of the save
        assert saved and interrupt.received


def test_a_users_own_handler_is_left_alone():
    def mine(number, frame):
        pass

    previous = signal.signal(signal.SIGINT, mine)
    try:
        with ctrl_c.kept() as interrupt, ctrl_c.deferred():
            assert signal.getsignal(signal.SIGINT) is mine
        assert not interrupt.received
    finally:
        signal.signal(signal.SIGINT, previous)
