"""What a training run leaves in its workdir, written as it goes so that a crash loses nothing
already logged: ``metrics.jsonl``, TensorBoard events (``tensorboard/``), and at the end
``results.json`` and ``plots/`` (loss/accuracy curves, firing rates, a spike raster)."""

from __future__ import annotations

import errno
import json
import os
from typing import Callable

import numpy as np

METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
# The figures `RunOutputs.finish` writes into plots/: --restart deletes these names and no others.
PLOT_FILES = ("training_curves.png", "firing_rates.png", "spike_raster.png")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """The workdir's disk (or quota) filled up while the run wrote to it; the message is one line."""


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) is a full disk or quota: an OSError with
    ENOSPC/EDQUOT, or the text of one passed on by TensorStore (orbax raises it as a ValueError)."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in _DISK_FULL:
            return True
        if any(os.strerror(code) in str(error) for code in _DISK_FULL):
            return True
        error = error.__cause__ or error.__context__
    return False


def kept_metrics(path: str, last_step: int, log: Callable[[str], None] = print) -> list[str]:
    """The lines of the ``metrics.jsonl`` at ``path`` up to step ``last_step`` (those after it will
    be logged again). A partial last line (a run killed while writing it) is dropped with one
    ``log`` line; an unreadable line before it raises ValueError naming the file and the line."""
    with open(path) as f:
        lines = list(enumerate(f, start=1))  # (line number in the file, text)
    lines = [(number, line) for number, line in lines if line.strip()]
    kept = []
    for number, line in lines:
        last = number == lines[-1][0]
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError) as error:
            if not last:
                raise ValueError(f"{path} line {number} is not a metrics record ({error}): delete that line "
                                 "(or pass --restart to start the run over).") from None
            step = None
        if last and (step is None or not line.endswith("\n")):
            log(f"note: dropped the partial last line of {path} (a run stopped while writing it)")
        elif step <= last_step:
            kept.append(line)
    return kept


def read_results(workdir: str) -> dict | None:
    """The run's ``results.json``, or None when absent or unreadable (a run killed while writing
    it; the file is written atomically, so an existing one means a finished run)."""
    try:
        with open(os.path.join(workdir, RESULTS_FILE)) as f:
            results = json.load(f)
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and "test_accuracy" in results else None


class RunOutputs:
    """Writers of one run's outputs under ``workdir``; ``first_step`` > 0 when resuming.

    On resume, lines of ``metrics.jsonl`` logged after the restored checkpoint are dropped (they
    will be logged again), so the file always describes one uninterrupted run; so is a partial
    last line (`kept_metrics`), with a ``log`` line.
    """

    def __init__(self, workdir: str, first_step: int, log: Callable[[str], None] = print):
        from safjax import tensorboard

        os.makedirs(workdir, exist_ok=True)
        self.workdir = workdir
        self._metrics_path = os.path.join(workdir, METRICS_FILE)
        kept = []
        if first_step and os.path.exists(self._metrics_path):
            kept = kept_metrics(self._metrics_path, first_step, log)
        with open(self._metrics_path, "w") as f:
            f.writelines(kept)
        # After a resume, TensorBoard drops the events the killed run logged past the checkpoint.
        self._writer = tensorboard.SummaryWriter(os.path.join(workdir, "tensorboard"),
                                                 purge_step=first_step + 1 if first_step else None)

    def _append(self, record: dict) -> None:
        with open(self._metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def log_step(self, step: int, epoch: int, train_loss: float, examples_per_second: float) -> None:
        """One logged minibatch interval."""
        self._append({"step": step, "epoch": epoch, "train_loss": train_loss,
                      "examples_per_second": examples_per_second})
        self._writer.scalar("train/loss", train_loss, step)
        self._writer.scalar("train/examples_per_second", examples_per_second, step)

    def log_epoch(self, record: dict) -> None:
        """One finished epoch: loss, test accuracy, firing rates per layer, throughput."""
        self._append(record)
        step = record["step"]
        self._writer.scalar("epoch/train_loss", record["train_loss"], step)
        self._writer.scalar("epoch/test_accuracy", record["test_accuracy"], step)
        for layer, rate in enumerate(record["firing_rates"], start=1):
            self._writer.scalar(f"firing_rate/layer_{layer}", rate, step)
        self._writer.flush()

    def flush(self) -> None:
        self._writer.flush()

    def finish(self, results: dict, history: list[dict], spikes: list[np.ndarray],
               layer_names: list[str], title: str = "") -> None:
        """``results.json`` and the figures in ``plots/``."""
        from safjax import plots

        # Written atomically: an existing results.json always means a finished run (the sweep relies on it).
        path = os.path.join(self.workdir, RESULTS_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump(results, f, indent=2)
        os.replace(path + ".tmp", path)
        folder = os.path.join(self.workdir, "plots")
        os.makedirs(folder, exist_ok=True)
        title = title or run_title(results)
        curves, rates, raster = (os.path.join(folder, name) for name in PLOT_FILES)
        plots.training_curves(history, curves, title=title)
        plots.firing_rate_curves(history, rates, layer_names, title=f"{title}: firing rate per spiking layer")
        plots.spike_raster(spikes, raster, title=f"{title}: one test example", layer_names=layer_names)
        self._writer.close()


def run_title(results: dict) -> str:
    """What a figure of this run is of: method, data set, model, seed, learning rate and T (e.g.
    ``saf_e on digits, digits_mlp, seed 0, lr 0.001, T=4``; seed and lr where ``results`` has
    them); an image folder is named by its last path component."""
    dataset = str(results.get("dataset", "?"))
    if dataset.startswith("image_folder:"):
        dataset = "image_folder:" + (os.path.basename(os.path.normpath(dataset.partition(":")[2])) or "/")
    run = (f", seed {results['seed']}" if "seed" in results else "") + (
        f", lr {results['learning_rate']:g}" if "learning_rate" in results else "")
    return f"{results.get('method', '?')} on {dataset}, {results.get('model', '?')}{run}, T={results.get('time_steps', '?')}"


def layer_names(net) -> list[str]:
    """One name per spiking layer after the operator that feeds it and its channels/units, counted
    per kind: ``conv 1 (64)``, ``conv 2 (128)``, ``dense 1 (512)``; ``layer k`` when no weighted
    operator feeds it."""
    counts: dict[str, int] = {}
    names = []
    for index, (layer, shape) in enumerate(zip(net.layers, net.layer_shapes), start=1):
        forward = next(p for p in layer.paths if p.source < index)
        weighted = [op for op in forward.ops if getattr(op, "synaptic", False)]
        if not weighted:
            names.append(f"layer {index} ({shape[-1]})")
            continue
        kind = "conv" if "Conv" in type(weighted[-1]).__name__ else "dense"
        counts[kind] = counts.get(kind, 0) + 1
        names.append(f"{kind} {counts[kind]} ({shape[-1]})")
    return names
