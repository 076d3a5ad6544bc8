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
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

CONFIG_FILE = "config.json"
# num_devices (0 = all) is compared through "devices", the count the run actually used.
FREE_FIELDS = ("workdir", "data_dir", "log_every", "checkpoint_every", "eval_batch_size", "num_devices")
ROUNDING_FIELDS = ("devices", "unroll")
# What a run leaves in its workdir (see safjax.run_outputs); --restart deletes these and nothing else.
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "results.json", "tensorboard", "plots", CONFIG_FILE)


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
    ``results.json``; None when neither is readable."""
    for name in (CONFIG_FILE, "results.json"):
        try:
            with open(os.path.join(workdir, name)) as f:
                stored = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(stored, dict) and "method" in stored:
            if name == "results.json":
                stored.setdefault("devices", stored.get("num_devices"))
            return stored
    return None


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


def restart(workdir: str) -> bool:
    """Delete the outputs of the run in ``workdir`` (only those, see ``RUN_OUTPUTS``); True if any."""
    found = False
    for name in RUN_OUTPUTS:
        path = os.path.join(workdir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
            found = True
        elif os.path.exists(path):
            os.remove(path)
            found = True
    return found


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
