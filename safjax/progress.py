"""Progress of long phases (decoding an image folder, training epochs): a single updating bar
(tqdm) when stdout is a terminal, plain lines at a steady cadence otherwise, so that logs
redirected to a file stay readable (one line every ``interval_s`` seconds, and whenever the
caller forces one)."""

from __future__ import annotations

import datetime
import sys
import time


def clock(seconds: float) -> str:
    """``h:mm:ss`` of a duration (rounded to the second)."""
    return str(datetime.timedelta(seconds=max(0, round(seconds))))


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """``total`` items of ``unit`` (e.g. "images"), described by ``description``.

    ``update(n, postfix="")`` advances by ``n``; on a terminal the bar shows rate and ETA, otherwise
    a line ``"  <description>: done/total <unit> (<rate> <unit>/s, ETA h:mm:ss) <postfix>"`` is
    printed when ``interval_s`` seconds have passed since the last one (or ``force=True``).
    ``enabled=False`` prints nothing (e.g. on every process but the first).
    """

    def __init__(self, total: int, description: str, unit: str, interval_s: float = 30.0,
                 enabled: bool = True, terminal: bool | None = None, initial: int = 0):
        self.total, self.description, self.unit = total, description, unit
        self.interval_s, self.enabled = interval_s, enabled
        self.initial = self.done = initial  # e.g. a resumed epoch's examples already trained
        self.start = time.time()
        self._last_line = self.start
        self._bar = None
        if enabled and (is_terminal() if terminal is None else terminal):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, unit=f" {unit}", file=sys.stdout,
                             leave=False, dynamic_ncols=True, smoothing=0.1, initial=initial)

    def update(self, n: int = 1, postfix: str = "", force: bool = False) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(n)
            return
        now = time.time()
        if force or now - self._last_line >= self.interval_s:
            self._last_line = now
            print(self.line(postfix), flush=True)

    def line(self, postfix: str = "") -> str:
        elapsed = time.time() - self.start
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        text = (f"  {self.description}: {self.done}/{self.total} {self.unit} ({rate:.1f} {self.unit}/s, "
                f"ETA {clock(eta)})")
        return f"{text}  {postfix}" if postfix else text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
