"""Training checkpoints (orbax): arrays plus JSON metadata, atomic, newest-good-first restore."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves ``(state pytree, JSON metadata)`` under ``directory/<step>``, keeping the newest few.

    Orbax writes a step to a temporary folder and renames it when complete, so a process killed
    mid-save leaves no half-written step behind; a step that is present but unreadable (disk
    corruption, a truncated copy) is skipped on restore with a one-line note, and the one before it used.
    """

    def __init__(self, directory: str, max_to_keep: int = 3):
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any, metadata: dict) -> None:
        if step in self._manager.all_steps():  # an unreadable leftover of an earlier run
            self._manager.delete(step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(metadata))
        # A failed save (e.g. a full disk) raises here; orbax would also log it with a traceback
        # from each of its threads, and the caller reports it in one line.
        with _quiet_loggers():
            self._manager.save(step, args=args, force=True)
            self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def restore_latest(self, like: Any, log: Callable[[str], None] = print) -> tuple[int, Any, dict] | None:
        """(step, state shaped like ``like``, metadata) of the newest readable step, or None.

        Each unreadable step costs one ``log`` line (its step and the first line of the reason);
        when steps exist but none is readable, a last line says the run starts from scratch.
        """
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        steps = sorted(self._manager.all_steps(), reverse=True)
        for step in steps:
            try:
                with _quiet_orbax():
                    restored = self._manager.restore(
                        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                      meta=ocp.args.JsonRestore()),
                    )
            except Exception as error:  # noqa: BLE001 - any unreadable step: fall back to an older one
                log(f"checkpoint {self.directory}/{step} is unreadable ({short_reason(error)}); skipped")
                continue
            return step, restored["state"], dict(restored["meta"])
        if steps:
            log(f"no readable checkpoint in {self.directory} ({len(steps)} unreadable): starting from scratch")
        return None


def short_reason(error: BaseException, limit: int = 160) -> str:
    """The error's type and the first line of its message, cut to ``limit`` characters (orbax /
    TensorStore errors carry the whole JSON specification of the array after the first line)."""
    text = (str(error).strip().splitlines() or [""])[0]
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _drop_closed_event_loop(hook):
    """``hook``, except for the "Event loop is closed" errors of a failed restore's reads in flight."""

    def unraisable(info):
        error = info.exc_value
        while error is not None:
            if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
                return
            error = error.__cause__ or error.__context__
        hook(info)

    return unraisable


@contextlib.contextmanager
def _quiet_loggers():
    """Drop the log records of orbax (and absl, asyncio) below CRITICAL for the body."""
    loggers = [logging.getLogger(name) for name in ("absl", "orbax", "orbax.checkpoint", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _quiet_orbax():
    """Orbax logs the failures it raises (with the full TensorStore specification), and when one
    array of a step is unreadable the reads of the others still in flight print "Event loop is
    closed" tracebacks from TensorStore's threads straight to file descriptor 2. While a restore
    is tried, those log records are dropped and fd 2 goes to a temporary file; after a failure
    (given a moment for the reads in flight to end) that text is discarded — the caller reports
    the failure in one line — and after a success it is written out unchanged."""
    sys.stderr.flush()
    saved = os.dup(2)
    captured = tempfile.TemporaryFile()
    os.dup2(captured.fileno(), 2)
    with _quiet_loggers():
        failed = True
        hook = sys.unraisablehook
        sys.unraisablehook = _drop_closed_event_loop(hook)
        try:
            yield
            failed = False
        finally:
            if failed:
                time.sleep(0.5)  # the other arrays' reads finish and print their noise here
                gc.collect()  # "Task exception was never retrieved" is logged (and dropped) now
            sys.unraisablehook = hook
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not failed:
                captured.seek(0)
                text = captured.read()
                if text:
                    sys.stderr.write(text.decode(errors="replace"))
                    sys.stderr.flush()
            captured.close()
