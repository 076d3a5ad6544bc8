"""Ctrl-C (SIGINT) in the training loop: never lost, never in the middle of a checkpoint save.

Python raises KeyboardInterrupt wherever the main thread happens to be when the signal arrives.
If that is a garbage-collection callback (JAX registers one that runs often), Python prints
"Exception ignored in: <function _xla_gc_callback …>" and carries on: the Ctrl-C is lost and the
run trains on. `kept` installs a handler that also remembers the signal, so the loop can raise
it again at the next minibatch, and silences that swallowed one's traceback; `deferred` holds
it back during a save.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading


class _Kept:
    """A SIGINT handler that raises KeyboardInterrupt, as Python's does, and remembers it."""

    def __init__(self):
        self.received = False

    def __call__(self, number, frame):
        self.received = True
        raise KeyboardInterrupt


def _ours(handler) -> bool:
    """Whether ``handler`` is Python's own SIGINT handler or `kept`'s (so not a user's)."""
    return handler is signal.default_int_handler or isinstance(handler, _Kept)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def kept():
    """Within the body, ``received`` (the yielded object's attribute) says whether Ctrl-C came,
    even when its KeyboardInterrupt was swallowed; the caller checks it at safe points. Outside
    the main thread, or under a handler of the user's, the yielded object never receives."""
    handler = _Kept()
    previous = signal.getsignal(signal.SIGINT)
    if not _in_main_thread() or previous is not signal.default_int_handler:
        yield handler
        return
    hook = sys.unraisablehook

    def unraisable(info):  # the swallowed KeyboardInterrupt is raised again by the caller: no traceback
        if not (info.exc_type is KeyboardInterrupt and handler.received):
            hook(info)

    signal.signal(signal.SIGINT, handler)
    sys.unraisablehook = unraisable
    try:
        yield handler
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook


@contextlib.contextmanager
def deferred():
    """Hold Ctrl-C back until the body ends, then raise its KeyboardInterrupt: a save is then
    complete (and known to the caller) or not begun, and orbax's writer threads are not left
    mid-write to print tracebacks at exit. A no-op outside the main thread or under a handler of
    the user's."""
    previous = signal.getsignal(signal.SIGINT)
    if not _in_main_thread() or not _ours(previous):
        yield
        return
    received = []
    signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if isinstance(previous, _Kept):
            previous.received = True
        raise KeyboardInterrupt
