"""Scalars for TensorBoard, written without TensorFlow.

The `tensorboard` package ships a pure-Python event-file writer (TFRecord framing with masked
CRC32C, a background flushing thread) and the `Event` / `Summary` protos; this module is a thin
scalar-only front end to it, so nothing here re-implements the file format.

    with SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=first_epoch) as writer:
        writer.scalar("train/loss", loss, step=epoch)

Then ``tensorboard --logdir=workdir``. In a multi-process run only process 0 should write.
"""

from __future__ import annotations

import glob
import operator
import os
import re
import time
from collections.abc import Mapping

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class SummaryWriter:
    """Appends scalar summaries to a new event file under ``logdir`` (created if missing).

    Each writer opens its own file (``events.out.tfevents.<time>.<host>.<pid>.<n>``), so a resumed
    run adds a file next to the earlier ones and TensorBoard reads them in order.

    Args:
      logdir: directory of the event file.
      purge_step: for a resumed run, the first step it will write. A `SessionLog.START` marker at
        that step tells TensorBoard to drop the points at or after it that earlier files hold
        (what the killed run wrote past its checkpoint), so no step is shown twice.
      flush_secs: the background thread writes pending events to disk at least this often.
    """

    def __init__(self, logdir: str, purge_step: int | None = None, flush_secs: float = 10.0):
        _wait_for_a_later_second(logdir)
        self._writer = EventFileWriter(logdir, flush_secs=flush_secs)
        self._closed = False
        if purge_step is not None:
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._add(event_pb2.Event(step=_step(purge_step, "purge_step"), session_log=start))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Record ``value`` (a Python or 0-d array number; NaN and ±inf are kept) at ``step``."""
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"`tag` must be a non-empty string, got {tag!r}.")
        step = _step(step, "step")
        value = float(value)  # an explicit host copy of a device scalar
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
        self._add(event_pb2.Event(step=step, summary=summary))

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """`scalar` for each ``tag: value`` of ``values``, all at ``step``."""
        for tag, value in values.items():
            self.scalar(tag, value, step)

    def flush(self) -> None:
        """Write every pending event to disk now."""
        if not self._closed:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the file; later calls to `close` do nothing."""
        if not self._closed:
            self._writer.close()
            self._closed = True

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _add(self, event: event_pb2.Event) -> None:
        if self._closed:
            raise ValueError(f"SummaryWriter for {self._writer.get_logdir()!r} is closed.")
        event.wall_time = time.time()
        self._writer.add_event(event)


def _wait_for_a_later_second(logdir: str, max_skew_s: float = 2.0) -> None:
    """Sleep (< 1 s) until the clock's whole second is past every event file's in ``logdir``.

    TensorBoard reads a directory's event files in name order, and a name starts with the whole
    second it was opened in, then host, pid and a per-process counter compared as text: two files
    opened in one second can sort against their order (counter 10 before 9), and a resumed run's
    purge marker then comes before the points it should drop. A file stamped more than
    ``max_skew_s`` ahead (another host's clock) is not waited for.
    """
    names = (os.path.basename(path) for path in
             glob.glob(os.path.join(glob.escape(logdir), "events.out.tfevents.*")))
    stamps = [int(m.group(1)) for name in names
              if (m := re.match(r"events\.out\.tfevents\.(\d+)\.", name))]
    latest = max(stamps, default=-1)
    now = time.time()
    if now + max_skew_s > latest >= int(now):
        time.sleep(latest + 1 - now)


def _step(step, name: str) -> int:
    """``step`` as an int ≥ 0 (NumPy and 0-d JAX integers included), else ValueError."""
    try:
        index = -1 if isinstance(step, bool) else operator.index(step)
    except TypeError:
        index = -1
    if index < 0:
        raise ValueError(f"`{name}` must be an int ≥ 0, got {step!r}.")
    return index
