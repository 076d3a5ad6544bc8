"""Grid sweeps of `experiments.train`: one subprocess and one directory per cell, resumable, summarised
over seeds.

A grid is ``"key=v1,v2;key=v1,…"`` over flags of `experiments.train` (the `ExperimentConfig`
fields and ``config``, the preset); its cells are the cartesian product in the order written (the
last key varies fastest) and each lives in ``workdir/<key=value,…>`` (e.g.
``method=saf_e,time_steps=2,seed=0``). A cell is one
``python -m experiments.train --workdir=<cell dir> <base flags> <cell flags>`` with its output
appended to ``<cell dir>/log.txt``; a cell with a readable ``results.json`` is done and skipped, any
other is (re)run, and the trainer resumes from the cell's checkpoints. A failed cell is recorded and
the sweep goes on. The summary (``summary.md``, ``summary.csv``, ``sweep.png``) has one row per
setting of the grid keys other than ``seed``: test accuracy mean ± std over the seeds, time per
epoch, peak memory.

With ``parallel > 1`` and GPUs, each concurrent cell gets one GPU through ``CUDA_VISIBLE_DEVICES``
(round robin over the GPUs, ``--num_devices=1``); with ``parallel == 1`` the single running cell
sees every device and trains data-parallel.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import itertools
import json
import math
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from safjax import plots
from safjax.run_outputs import read_results  # a cell is done when its run left results
from safjax.experiment_config import ExperimentConfig

# (command, environment additions, log path) -> exit code. Injectable so tests need no subprocess.
Runner = Callable[[list[str], Mapping[str, str], str], int]

# Flags of `experiments.train` that are not `ExperimentConfig` fields, with their types.
TRAINER_ONLY_FLAGS = {"config": str, "distributed": bool, "coordinator_address": str,
                      "num_processes": int, "process_id": int, "distributed_timeout": int}
# Set by the sweep itself, once per cell.
_NOT_SWEPT = ("workdir",)
# What results.json records differently from the flag: the devices used, the resolved model, the
# preset's name (not recorded).
_NOT_COMPARED = ("num_devices", "config")
_LOG_TAIL_LINES = 15


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of the grid: ``(field, value as written)`` pairs in grid order."""

    settings: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        """The cell's directory name, e.g. ``method=saf_e,time_steps=2,seed=0``; a ``/`` in a value
        (``dataset=image_folder:/data/cifar10``) becomes ``_`` (``dataset=image_folder:_data_cifar10``)."""
        return ",".join(f"{key}={value.replace('/', '_')}" for key, value in self.settings)

    @property
    def flags(self) -> list[str]:
        return [f"--{key}={value}" for key, value in self.expanded()]

    def expanded(self) -> list[tuple[str, str]]:
        """The settings with a method spec (``method=tbptt:truncation=2``) split into ``method``
        and one pair per method setting."""
        pairs = []
        for key, value in self.settings:
            if key == "method" and ":" in value:
                name, _, rest = value.partition(":")
                pairs.append(("method", name))
                pairs += [tuple(assignment.split("=", 1)) for assignment in rest.split(":")]
            else:
                pairs.append((key, value))
        return pairs


@dataclasses.dataclass(frozen=True)
class Failure:
    cell: str
    returncode: int | None  # negative: killed by that signal; None: it could not start (OSError)
    log_tail: str  # the last lines of the cell's log.txt


class SweepOutcome(typing.NamedTuple):
    rows: list[dict]  # `summarize`'s rows
    failures: list[Failure]
    num_cells: int


def _flag_types() -> dict[str, type]:
    from safjax import methods

    fields = {k: v for k, v in typing.get_type_hints(ExperimentConfig).items() if k != "method_settings"}
    settings = {name: setting.type for name, (setting, _) in methods.all_settings().items()}
    return {**fields, **settings, **TRAINER_ONLY_FLAGS}


def parse_value(key: str, text: str):
    """``text`` as the type of trainer flag ``key`` (an `ExperimentConfig` field, a method setting or
    ``config``);
    ValueError naming both otherwise."""
    types = _flag_types()
    if key not in types:
        raise ValueError(f"{key!r} is not a flag of experiments.train: expected one of {', '.join(types)}.")
    kind = types[key]
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if kind in (int, float, str):
            value = kind(text)
            if kind is float and not math.isfinite(value):
                raise ValueError
            return value
    except ValueError:
        raise ValueError(f"{key}={text!r}: expected {'a finite float' if kind is float else 'an ' + kind.__name__}."
                         ) from None
    raise ValueError(f"{key} (of type {kind}) cannot be set from the command line.")


def parse_grid(spec: str) -> dict[str, list[str]]:
    """``"method=saf_e,ottt_o;seed=0,1"`` → ``{"method": ["saf_e", "ottt_o"], "seed": ["0", "1"]}``.

    Keys must be `ExperimentConfig` fields (not ``workdir``) or method settings, each once; a
    ``method`` value may be a spec with settings (``method=saf_e,tbptt:truncation=2:block_size=4``,
    `safjax.methods.parse_spec`), which become that cell's flags; values must parse as the
    field's type, each once per key (a ``/``, as in ``dataset=image_folder:/data/cifar10``, becomes
    ``_`` in the cell's directory name).
    """
    grid: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        key, equals, values_text = part.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ValueError(f"--grid: {part!r} is not key=value[,value…].")
        if key in _NOT_SWEPT:
            raise ValueError(f"--grid: {key} is set by the sweep (one per cell) and cannot be swept.")
        if key in grid:
            raise ValueError(f"--grid: {key} appears twice.")
        values = [v.strip() for v in values_text.split(",")]
        for value in values:
            if not value:
                raise ValueError(f"--grid: {key} has an empty value in {values_text!r}.")
            try:
                parse_value(key, value)
                if key == "method" and ":" in value:
                    from safjax import methods

                    methods.parse_spec(value)
            except ValueError as error:
                raise ValueError(f"--grid: {error}") from None
        if len(set(values)) < len(values):
            raise ValueError(f"--grid: {key} repeats a value in {values_text!r}.")
        grid[key] = values
    if not grid:
        raise ValueError(f"--grid={spec!r} is empty: expected e.g. 'method=saf_e,ottt_o;seed=0,1'.")
    return grid


def expand_grid(grid: Mapping[str, Sequence[str]]) -> list[Cell]:
    """The cartesian product of ``grid``, the last key varying fastest."""
    keys = list(grid)
    return [Cell(tuple(zip(keys, values))) for values in itertools.product(*grid.values())]


def parse_base_flags(base_flags: Sequence[str], grid_keys: Sequence[str]) -> dict:
    """The ``--name=value`` flags given to every cell, as ``{field: parsed value}``."""
    settings = {}
    for flag in base_flags:
        name, equals, text = flag.removeprefix("--").partition("=")
        if not flag.startswith("--") or not equals:
            raise ValueError(f"base flag {flag!r}: expected --name=value (a flag of experiments.train).")
        if name in _NOT_SWEPT:
            raise ValueError(f"base flag {flag!r}: the sweep sets --{name} for each cell.")
        if name in grid_keys:
            raise ValueError(f"base flag {flag!r}: {name} is also a grid key.")
        try:
            settings[name] = parse_value(name, text)
        except ValueError as error:
            raise ValueError(f"base flag {flag!r}: {error}") from None
    return settings


def validate_cells(cells: Sequence[Cell], base: Mapping, resolve: Callable | None = None) -> None:
    """Build and validate every cell's `ExperimentConfig` (preset, base flags, cell settings) before
    anything runs: ValueError naming the first bad cell and the trainer's message otherwise.

    ``resolve(preset, overrides) -> ExperimentConfig`` (default `experiments.presets.resolve`).
    ``num_devices`` is only checked to be ≥ 0 here: counting the devices would initialise JAX's
    GPU backend in the sweep process and take memory the cells need.
    """
    if resolve is None:
        from experiments import presets

        resolve = presets.resolve
    for cell in cells:
        try:
            settings = {**base, **{k: parse_value(k, v) for k, v in cell.expanded()}}
            config = resolve(settings.get("config", ""),
                             {k: v for k, v in settings.items() if k not in TRAINER_ONLY_FLAGS})
            if config.num_devices < 0:
                raise ValueError(f"--num_devices={config.num_devices} is invalid: expected 0 (all) or a count ≥ 1.")
            dataclasses.replace(config, num_devices=0).validate()
        except ValueError as error:
            raise ValueError(f"cell {cell.name}: {error} (nothing was run)") from None


def device_assignment(slot: int, parallel: int, gpus: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(environment additions, extra trainer flags) for the cell running in ``slot`` ∈ [0, parallel).

    With ``parallel > 1`` and GPUs, slot s gets GPU ``gpus[s % len(gpus)]`` alone. When more slots
    than GPUs share them, JAX's default preallocation (most of a GPU's memory per process) is
    turned off so that the processes on one GPU fit together.
    """
    if parallel <= 1 or not gpus:
        return {}, []
    env = {"CUDA_VISIBLE_DEVICES": gpus[slot % len(gpus)]}
    if parallel > len(gpus) and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env, ["--num_devices=1"]


def detect_gpus() -> list[str]:
    """GPU ids from ``CUDA_VISIBLE_DEVICES``, else from ``nvidia-smi``, else none.

    JAX is not asked: initialising its GPU backend here would reserve memory the cells need.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listing.splitlines() if line.strip()]


def run_subprocess(command: list[str], env: Mapping[str, str], log_path: str) -> int:
    """The default `Runner`: run ``command`` with ``env`` added, its output appended to ``log_path``."""
    with open(log_path, "a") as log:
        words = [f"{k}={v}" for k, v in env.items()] + command
        log.write(f"# {datetime.datetime.now():%Y-%m-%d %H:%M:%S}: {' '.join(words)}\n")
        log.flush()  # the header stays above the child's output, which goes to the same file
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                              check=False).returncode


def _stale(results: Mapping, base: Mapping, cell: Cell) -> list[str]:
    """How ``results`` disagree with the flags given explicitly (defaults and presets are not
    checked: results.json does not say which values came from where)."""
    expected = {**base, **{k: parse_value(k, v) for k, v in cell.expanded()}}
    return [f"{k} {results[k]!r} ≠ {v!r}" for k, v in expected.items()
            if k not in _NOT_COMPARED and k in results and results[k] != v]


def _log_tail(path: str, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return "(no log)"


def _exit_text(returncode: int | None) -> str:
    if returncode is None:
        return "could not start (see its log)"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"exit code {returncode}"
    return f"exit code {returncode}"


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


def run_sweep(grid: str, workdir: str, base_flags: Sequence[str] = (), parallel: int = 1,
              gpus: Sequence[str] | None = None, runner: Runner | None = None,
              log: Callable[[str], None] = print, resolve: Callable | None = None) -> SweepOutcome:
    """Run every cell of ``grid`` that has no results yet, then write the summary.

    Args:
      grid: ``"key=v1,v2;key=v1,…"`` (see `parse_grid`).
      workdir: the sweep's directory: one subdirectory per cell, ``sweep.json`` (the grid and base
        flags), ``summary.md``, ``summary.csv`` and ``sweep.png``.
      base_flags: ``--name=value`` flags of `experiments.train` given to every cell.
      parallel: cells run at once.
      gpus: GPU ids to share out when ``parallel > 1`` (None: `detect_gpus`; empty: none).
      runner: runs one cell (see `Runner`); None: `run_subprocess`.
      resolve: builds a cell's `ExperimentConfig` for `validate_cells` (None: the trainer's presets).

    Returns:
      The summary rows, the failed cells (exit code and log tail) and the number of cells. Raises
      ValueError, before running anything, on a bad grid or base flag, a cell whose configuration
      the trainer would refuse (`validate_cells`), or when a cell directory holds results made
      with other settings.
    """
    runner = runner or run_subprocess
    if parallel < 1:
        raise ValueError(f"--parallel={parallel} is invalid: expected an integer ≥ 1.")
    grid_values = parse_grid(grid)
    base = parse_base_flags(base_flags, list(grid_values))
    cells = expand_grid(grid_values)
    gpus = detect_gpus() if gpus is None else list(gpus)
    if parallel > 1 and gpus and "num_devices" in {*base, *grid_values}:
        raise ValueError("num_devices is set to 1 per cell when cells share out GPUs (--parallel > 1); "
                         "leave it out, or pass --gpus=none.")
    names = [c.name for c in cells]
    if len(set(names)) < len(names):
        clash = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"--grid: two cells share the directory name {clash!r} (values that differ only in "
                         "'/' vs '_'): rename one of them.")
    validate_cells(cells, base, resolve)
    workdir = os.path.abspath(workdir)
    stale = []
    for cell in cells:
        results = read_results(os.path.join(workdir, cell.name))
        if results is not None and (differences := _stale(results, base, cell)):
            stale.append(f"{cell.name} ({', '.join(differences)})")
    if stale:
        raise ValueError(f"{len(stale)} cell(s) in {workdir} hold results made with other settings, e.g. "
                         f"{stale[0]}: use a new --workdir or delete those cell directories.")
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "sweep.json"), "w") as f:
        json.dump({"grid": grid, "base_flags": list(base_flags), "cells": [c.name for c in cells]}, f, indent=2)

    todo = [c for c in cells if read_results(os.path.join(workdir, c.name)) is None]
    placement = (f", one GPU each from {','.join(gpus)}" if parallel > 1 and gpus else "")
    log(f"sweep: {len(cells)} cells ({len(cells) - len(todo)} already done), {len(todo)} to run, "
        f"{parallel} at a time{placement}; logs in {workdir}/<cell>/log.txt")

    failures: list[Failure] = []
    slots: queue.SimpleQueue[int] = queue.SimpleQueue()
    for slot in range(parallel):
        slots.put(slot)
    stop = threading.Event()
    start = time.time()

    def run_cell(cell: Cell) -> tuple[Cell, int | None, float]:
        if stop.is_set():
            return cell, None, 0.0
        slot = slots.get()
        try:
            cell_dir = os.path.join(workdir, cell.name)
            os.makedirs(cell_dir, exist_ok=True)
            env, device_flags = device_assignment(slot, parallel, gpus)
            command = [sys.executable, "-m", "experiments.train", f"--workdir={cell_dir}", *base_flags,
                       *cell.flags, *device_flags]
            log_path, began = os.path.join(cell_dir, "log.txt"), time.time()
            try:
                returncode = runner(command, env, log_path)
            except OSError as error:  # e.g. no such executable: a failed cell, not a failed sweep
                with open(log_path, "a") as f:
                    f.write(f"sweep: could not run {command}: {error!r}\n")
                returncode = None
            return cell, returncode, time.time() - began
        finally:
            slots.put(slot)

    done = len(cells) - len(todo)
    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        for finished, future in enumerate(as_completed([pool.submit(run_cell, c) for c in todo]), 1):
            cell, returncode, seconds = future.result()
            cell_dir = os.path.join(workdir, cell.name)
            results = read_results(cell_dir)
            done += 1
            if returncode == 0 and results is not None:
                status = f"test accuracy {results['test_accuracy']:.4f}"
            else:
                tail = _log_tail(os.path.join(cell_dir, "log.txt"))
                if returncode == 0:
                    tail = f"exited 0 but wrote no readable results.json\n{tail}"
                failures.append(Failure(cell.name, returncode, tail))
                status = f"FAILED ({_exit_text(returncode)})"
            elapsed = time.time() - start
            eta = elapsed / finished * (len(todo) - finished)
            log(f"[{done}/{len(cells)}] {cell.name}: {status}, {seconds:.1f} s | "
                f"elapsed {_clock(elapsed)}, ETA {_clock(eta)}")
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        log("interrupted: rerun the same command to resume (finished cells are skipped, "
            "interrupted ones resume from their checkpoints).")
        raise
    pool.shutdown()

    rows = write_summary(workdir, failures)
    for failure in failures:
        log(f"FAILED {failure.cell} ({_exit_text(failure.returncode)}); last lines of its log:\n"
            + "\n".join("    " + line for line in failure.log_tail.splitlines()))
    log(f"summary: {os.path.join(workdir, 'summary.md')}")
    return SweepOutcome(rows, failures, len(cells))


def time_per_epoch(results: Mapping) -> float | None:
    """``time_per_epoch_s`` if the trainer wrote it, else wall time / epochs (None if neither; the
    fallback counts compilation, and only the last attempt's time for a resumed run)."""
    if results.get("time_per_epoch_s") is not None:
        return float(results["time_per_epoch_s"])
    if results.get("wall_time_s") is not None and results.get("epochs_completed"):
        return results["wall_time_s"] / results["epochs_completed"]
    return None


def group_keys(grid_keys: Sequence[str]) -> list[str]:
    """The columns that tell summary rows apart: method and T always, then the other grid keys
    except the seed."""
    return ["method", "time_steps", *(k for k in grid_keys if k not in ("method", "time_steps", "seed"))]


def summarize(results: Sequence[Mapping], keys: Sequence[str]) -> list[dict]:
    """One row per distinct ``keys`` value in ``results`` (the results.json of the cells), in first-
    seen order: the ``keys``, then

    - ``accuracy_mean``, ``accuracy_std``: test accuracy (0–1) over the group's seeds; the std is the
      sample std (n − 1), 0 for one seed;
    - ``time_per_epoch_s``: the mean of `time_per_epoch` (None if no cell has one);
    - ``peak_memory_bytes``: the largest ``peak_memory_bytes`` of the group (None if absent);
    - ``num_seeds``: the group's cells.
    """
    groups: dict[tuple, list[Mapping]] = {}
    for result in results:
        groups.setdefault(tuple(result.get(k) for k in keys), []).append(result)
    rows = []
    for values, group in groups.items():
        accuracies = [float(r["test_accuracy"]) for r in group]
        times = [t for t in map(time_per_epoch, group) if t is not None]
        memories = [r["peak_memory_bytes"] for r in group if r.get("peak_memory_bytes") is not None]
        rows.append({
            **dict(zip(keys, values)),
            "accuracy_mean": statistics.fmean(accuracies),
            "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "time_per_epoch_s": statistics.fmean(times) if times else None,
            "peak_memory_bytes": max(memories) if memories else None,
            "num_seeds": len(group),
        })
    return rows


def summarize_only(workdir: str, log: Callable[[str], None] = print) -> list[dict]:
    """Rebuild summary.md, summary.csv and sweep.png from the results already in ``workdir``."""
    if not os.path.exists(os.path.join(workdir, "sweep.json")):
        raise ValueError(f"--workdir={workdir!r} holds no sweep.json: not a sweep directory.")
    rows = write_summary(os.path.abspath(workdir), [])
    log(f"summary: {os.path.join(workdir, 'summary.md')}")
    return rows


def write_summary(workdir: str, failures: Sequence[Failure]) -> list[dict]:
    """Summarise the cells listed in ``workdir/sweep.json`` into summary.md, summary.csv, sweep.png."""
    with open(os.path.join(workdir, "sweep.json")) as f:
        sweep = json.load(f)
    grid = parse_grid(sweep["grid"])
    cells = expand_grid(grid)
    found = {cell.name: read_results(os.path.join(workdir, cell.name)) for cell in cells}
    keys = group_keys(list(grid))
    # The cell's own settings win: `config` is in no results.json, and `model` is resolved there.
    records = [{**found[cell.name], **{k: parse_value(k, v) for k, v in cell.settings}}
               for cell in cells if found[cell.name] is not None]
    rows = summarize(records, keys)
    metrics = ["accuracy_mean", "accuracy_std", "time_per_epoch_s", "peak_memory_bytes", "num_seeds"]
    with open(os.path.join(workdir, "summary.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*keys, *metrics])
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    plot = os.path.join(workdir, "sweep.png")
    if rows:
        series = [k for k in keys if k != "time_steps"]
        plots.sweep_comparison(rows, plot, series_keys=tuple(series), title=_plot_title(sweep, records))
    elif os.path.exists(plot):
        os.remove(plot)
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write(_markdown(sweep, keys, rows, found, failures, has_plot=bool(rows)))
    return rows


def _plot_title(sweep: Mapping, records: Sequence[Mapping]) -> str:
    """sweep.png's title: what it shows, the grid and the data set(s), e.g. ``test accuracy (mean ±
    std over seeds) on digits`` over ``grid method=saf_e,ottt_o;seed=0,1``."""
    datasets = ", ".join(dict.fromkeys(str(r.get("dataset", "?")) for r in records))
    return f"test accuracy (mean ± std over seeds) on {datasets}\ngrid {sweep['grid']}"


def _markdown(sweep: Mapping, keys: Sequence[str], rows: Sequence[Mapping], found: Mapping,
              failures: Sequence[Failure], has_plot: bool) -> str:
    base = " ".join(sweep["base_flags"]) or "(none)"
    finished = sum(r is not None for r in found.values())
    lines = [
        "# Sweep summary", "",
        (f"Grid `{sweep['grid']}`, base flags `{base}`: {finished} of {len(found)} cells finished. "
         "Test accuracy is the mean ± sample std over seeds (std 0 for one seed); time per epoch "
         "is the mean over seeds; peak memory the largest."), "",
        "| " + " | ".join([*keys, "test accuracy (%)", "time / epoch (s)", "peak memory (MiB)", "seeds"]) + " |",
        "|" + "---|" * (len(keys) + 4),
    ]
    for row in rows:
        cells = [str(row[k]) for k in keys] + [
            f"{100 * row['accuracy_mean']:.2f} ± {100 * row['accuracy_std']:.2f}",
            "—" if row["time_per_epoch_s"] is None else f"{row['time_per_epoch_s']:.2f}",
            "—" if row["peak_memory_bytes"] is None else f"{row['peak_memory_bytes'] / 2**20:.1f}",
            str(row["num_seeds"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if has_plot:
        lines += ["", "![test accuracy against T](sweep.png)"]
    failed = {f.cell: f for f in failures}
    missing = [name for name, results in found.items() if results is None]
    if missing:
        lines += ["", "## Cells without results", ""]
        for name in missing:
            why = (f"failed, {_exit_text(failed[name].returncode)}" if name in failed
                   else "failed or not run yet")
            lines.append(f"- `{name}`: {why}; see `{name}/log.txt`")
    lines += ["", "Rebuild with `python -m experiments.sweep --workdir=<this directory> --summarize_only`.", ""]
    return "\n".join(lines)
