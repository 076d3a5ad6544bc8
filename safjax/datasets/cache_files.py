"""Temporary files of the data caches (`safjax.datasets.image_folder`, `safjax.datasets.events`).

A cache entry is written to a temporary file in its folder and renamed when complete, so a
writer killed mid-write (SIGKILL, power loss) leaves the temporary file behind — for a decoded
data set, hundreds of MB. Temporary names carry the writer's host and pid
(``.tmp-<host>-<pid>-<random><suffix>``), so the next cache access removes those of writers on
this host that no longer run, and those of other hosts (or of older safjax versions, named
without a pid) once they are older than ``STALE_AFTER_S``.
"""

from __future__ import annotations

import os
import socket
import time

PREFIX = ".tmp-"
STALE_AFTER_S = 24 * 3600.0
_LEGACY = (("tmp", ".tmp"),)  # (prefix, suffix) of temporary names of older versions (events.cached)


def temp_prefix() -> str:
    """The start of this process's temporary names: ``.tmp-<host>-<pid>-``."""
    return f"{PREFIX}{socket.gethostname()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _is_stale(name: str, path: str, now: float) -> bool:
    """Whether ``name`` in its folder is the temporary file of a writer that is gone."""
    if name.startswith(PREFIX):
        host, _, pid = name[len(PREFIX):].rpartition("-")[0].rpartition("-")
        if host == socket.gethostname() and pid.isdigit():
            return not _alive(int(pid))
    elif not any(name.startswith(p) and name.endswith(s) for p, s in _LEGACY):
        return False  # not a temporary file
    try:
        return now - os.path.getmtime(path) > STALE_AFTER_S
    except OSError:  # removed meanwhile
        return False


def remove_stale(directory: str) -> list[str]:
    """Delete the temporary files in ``directory`` whose writers are gone; returns their paths
    and says so in one line when there were any."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:  # no cache folder yet
        return []
    now, removed, size = time.time(), [], 0
    for name in names:
        path = os.path.join(directory, name)
        if _is_stale(name, path, now):
            try:
                size += os.path.getsize(path)
                os.remove(path)
            except OSError:  # another process removed it first
                continue
            removed.append(path)
    if removed:
        print(f"removed {len(removed)} temporary cache file(s) ({size / 1e6:.1f} MB) left in {directory} "
              "by writers that were killed", flush=True)
    return removed
