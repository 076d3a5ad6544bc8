"""The run a workdir holds: ``config.json``, written when a run starts, and the check that a rerun
into the same workdir continues *that* run rather than silently resuming another one.

Fields fall into three groups:

- ``FREE_FIELDS`` change nothing the run computes (where data and outputs live, how often it logs
  and checkpoints, the evaluation batch size) and may differ on a rerun;
- ``ROUNDING_FIELDS`` — the data-parallel device count and the scan unroll factor — change only
  how XLA sums the same numbers: a rerun may change them, with a note, and the results then equal
  an uninterrupted run's up to float rounding instead of exactly;
- ``epochs`` may grow under the constant learning-rate schedule (extending a run: the first E
  epochs of a longer run are exactly those of an E-epoch run); it may not shrink, and under the
  cosine schedule, which depends on the number of epochs, it must match;
- every other field changes the result and must match; otherwise the rerun is refused in one
  line naming the fields and the ways out (a new ``--workdir``, or ``--restart``).

A record that exists but cannot be read is refused the same way (its run cannot be checked);
`lock` keeps a second run out of a workdir in use; `restart` deletes only what safjax wrote.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator

from safjax.run_outputs import METRICS_FILE, PLOT_FILES, RESULTS_FILE

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
# num_devices (0 = all) is compared through "devices", the count the run actually used.
FREE_FIELDS = ("workdir", "data_dir", "log_every", "checkpoint_every", "eval_batch_size", "num_devices",
               "data_workers", "skip_bad_examples")
ROUNDING_FIELDS = ("devices", "unroll")
# What a run leaves at the top of its workdir (see safjax.run_outputs), with the ``.tmp`` files of
# its atomic writes; --restart deletes these, and in the folders below only what safjax wrote there.
RUN_FILES = (METRICS_FILE, RESULTS_FILE, CONFIG_FILE, RESULTS_FILE + ".tmp", CONFIG_FILE + ".tmp")


def check_workdir(workdir: str) -> None:
    """Create ``workdir`` and make sure files can be written there; ValueError in one line otherwise
    (a file in the way, a read-only folder), before anything slow happens."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir={workdir} is a file, not a folder: pass a folder path (it is created if missing).")
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ValueError(f"--workdir={workdir} is not writable ({error.strerror or error}): pass a folder "
                         "you can write to.") from None


def record(config, devices: int) -> dict:
    """What ``config.json`` holds: every `ExperimentConfig` field and method setting, plus the devices used."""
    return {**config.as_flags(), "devices": devices}


def load(workdir: str) -> dict | None:
    """The stored record: ``config.json``, else (workdirs of older versions) the settings in
    ``results.json``; None when neither exists (an older safjax killed before its results).

    A present but unreadable record (truncated, edited, not a run's settings) raises ValueError in
    one line naming it: the run it belongs to cannot be checked, so it must not be resumed blindly.
    """
    for name in (CONFIG_FILE, RESULTS_FILE):
        path = os.path.join(workdir, name)
        if not os.path.exists(path):
            continue
        try:
            with open(path) as f:
                stored = json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(_unreadable(workdir, path, str(error))) from None
        if not (isinstance(stored, dict) and "method" in stored):
            raise ValueError(_unreadable(workdir, path, "not the settings of a safjax run"))
        if name == RESULTS_FILE:
            stored.setdefault("devices", stored.get("num_devices"))
        return stored
    return None


def _unreadable(workdir: str, path: str, reason: str) -> str:
    return (f"--workdir={workdir} holds checkpoints, but {path} is unreadable ({reason}), so they cannot "
            "be checked against this run's settings: pass --restart to delete that run and start over, "
            "or use another --workdir.")


def save(workdir: str, record_: dict) -> None:
    path = os.path.join(workdir, CONFIG_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(record_, f, indent=2)
    os.replace(path + ".tmp", path)


def has_run(workdir: str) -> bool:
    """Whether ``workdir`` holds (part of) a run: checkpoints or results."""
    checkpoints = os.path.join(workdir, "checkpoints")
    return (os.path.isdir(checkpoints) and any(name.isdigit() for name in os.listdir(checkpoints))) \
        or os.path.exists(os.path.join(workdir, "results.json"))


def _is_checkpoint(name: str) -> bool:
    """An orbax step folder (``44``) or one it was writing when killed (``44.orbax-checkpoint-tmp…``)."""
    step, _, rest = name.partition(".")
    return step.isdigit() and (not rest or rest.startswith("orbax-checkpoint-tmp"))


def _written_by_safjax(workdir: str) -> list[str]:
    """Paths (relative to ``workdir``) of what a safjax run wrote there and nothing else: its files,
    checkpoint steps, TensorBoard event files and plots by name."""
    def listing(folder: str) -> list[str]:
        path = os.path.join(workdir, folder)
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    found = [name for name in RUN_FILES if os.path.isfile(os.path.join(workdir, name))]
    found += [os.path.join("checkpoints", n) for n in listing("checkpoints") if _is_checkpoint(n)]
    found += [os.path.join("tensorboard", n) for n in listing("tensorboard") if n.startswith("events.out.tfevents.")]
    return found + [os.path.join("plots", n) for n in listing("plots") if n in PLOT_FILES]


def restart(workdir: str) -> list[str]:
    """Delete what the run in ``workdir`` wrote (see `_written_by_safjax`), and its folders once empty;
    returns the deleted paths, relative to ``workdir``. Anything else (a user's file, even inside
    ``plots/``) is left where it is: see `other_files`."""
    deleted = _written_by_safjax(workdir)
    for name in deleted:
        path = os.path.join(workdir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    for folder in ("checkpoints", "tensorboard", "plots"):
        with contextlib.suppress(OSError):  # absent, or holds files safjax did not write
            os.rmdir(os.path.join(workdir, folder))
    return deleted


def other_files(workdir: str) -> list[str]:
    """Every file under ``workdir`` that is not safjax's own lock or write test, relative to it."""
    found = []
    for folder, _, names in os.walk(workdir):
        for name in names:
            path = os.path.relpath(os.path.join(folder, name), workdir)
            if not (name.startswith(LOCK_FILE) or name.startswith(".write-test-")) or folder != workdir:
                found.append(path)
    return sorted(found)


@contextlib.contextmanager
def lock(workdir: str, process_index: int = 0) -> Iterator[None]:
    """Hold ``workdir``'s lock (an exclusive ``flock`` on ``.lock``, ``.lock-process-<i>`` for process
    i > 0 of a multi-process run) for the body; ValueError in one line naming the run holding it.

    The operating system drops the lock when its process ends, however it ends, so a killed run
    never leaves a stale one; the file keeps the holder's pid for the message.
    """
    name = LOCK_FILE if process_index == 0 else f"{LOCK_FILE}-process-{process_index}"
    fd = os.open(os.path.join(workdir, name), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise ValueError(f"--workdir={workdir} is in use by another run (pid {holder}): wait for it to "
                             "end (or stop it), or use another --workdir.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def compare(stored: dict, current: dict) -> tuple[list[str], list[str]]:
    """(fields that differ and change the result, notes on fields that may differ)."""
    differing, notes = [], []
    for key, value in current.items():
        if key in FREE_FIELDS or key not in stored or stored[key] == value:
            continue
        if key in ROUNDING_FIELDS:
            notes.append(f"{key} {stored[key]!r} → {value!r} (the results equal an uninterrupted run's up to "
                         "float rounding, not exactly)")
        elif key == "epochs" and current.get("schedule") == "constant" and value > stored[key]:
            notes.append(f"epochs {stored[key]} → {value} (extended; with the constant schedule the same as "
                         f"training {value} epochs from the start)")
        elif key == "epochs" and current.get("schedule") == "constant":
            differing.append(f"epochs {stored[key]} ≠ {value} (a run can be extended, not shortened)")
        else:
            differing.append(f"{key} {stored[key]!r} ≠ {value!r}")
    return differing, notes


def refusal(workdir: str, differing: list[str]) -> str:
    cosine = " (the cosine schedule depends on the number of epochs)" if any(
        d.startswith("epochs ") and "(" not in d for d in differing) else ""
    return (f"--workdir={workdir} holds a run with other settings ({'; '.join(differing)}){cosine}: "
            "use a new --workdir, or pass --restart to delete that run and start over.")
