"""The trainer's minibatch loop: the compiled step on each minibatch, an evaluation at the end of
each epoch, a checkpoint every ``checkpoint_every`` minibatches, and the run's totals (training
time, examples, compile time, compiled memory, wall time) summed over every attempt of a resumed
run, so that it reports the figures of an uninterrupted one.

`safjax.trainer` builds the run (data, model, method, compiled step, the checkpoint it resumes
from) and hands it to `TrainingLoop`; what the loop leaves (params, history, totals) becomes the
run's results.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from safjax import ctrl_c, data_loader, learning_monitor, parallel, progress
from safjax.experiment_config import ExperimentConfig


class Resumed(NamedTuple):
    """Where a run starts: from scratch, or from the newest readable checkpoint of its workdir."""

    first_step: int  # minibatches already trained
    params: Any
    opt_state: Any
    history: list  # one dict per finished epoch
    epoch_losses: list  # the losses of the epoch the run stopped in
    first_loss: float | None  # the run's first minibatch loss (for the learning monitor)
    totals: dict  # time, examples and memory of the earlier attempts (`TrainingLoop.totals`)
    data: dict | None  # the input pipeline's position (`data_state`); none in older checkpoints
    skipped: list  # the unreadable examples earlier attempts skipped


def from_scratch(params, opt_state) -> Resumed:
    return Resumed(0, params, opt_state, [], [], None, {}, None, [])


class Evaluation(NamedTuple):
    """What the end of an epoch evaluates: ``evaluate`` (`trainer._make_evaluator`) on
    ``test_set`` in global batches of ``batch_size``, made by ``workers`` data processes;
    ``num_classes`` for the learning monitor."""

    evaluate: Callable
    test_set: Any
    batch_size: int
    workers: int
    num_classes: int


def interrupted_line(workdir: str, at: int, total_steps: int, saved: int) -> str:
    """The one line of a run stopped by Ctrl-C at minibatch ``at``; ``saved``: its newest checkpoint."""
    where = f"interrupted at minibatch {at} of {total_steps}"
    if not workdir:
        return f"{where}; nothing was saved (no --workdir)."
    if not saved:
        return f"{where}, before its first checkpoint: rerunning the same command starts it over."
    return (f"{where}; rerun the same command to resume from the checkpoint at minibatch {saved} in "
            f"{os.path.join(workdir, 'checkpoints')} (it then ends exactly like an uninterrupted run).")


class TrainingLoop:
    """Trains minibatches ``resumed.first_step`` … ``total_steps - 1`` (`run`) and keeps what the
    run's results need: ``params``, ``opt_state``, ``history``, ``first_loss``, ``compiled``,
    ``compile_time``, ``memory``, ``train_time`` (this attempt's seconds in the step) and `totals`.

    ``step``: `parallel.make_parallel_train_step`'s result; ``minibatch_key(k)``: minibatch k's
    random key; ``checkpointer``/``outputs``: None without a workdir (``outputs`` None also on
    processes other than 0); ``skipped``: `safjax.skipped_examples.SkippedExamples`; ``started``: the process's start
    (`time.time()`), for the wall time; ``log``: prints on process 0.
    """

    def __init__(self, config: ExperimentConfig, step, net, minibatch_key, evaluation: Evaluation,
                 steps_per_epoch: int, total_steps: int, resumed: Resumed, checkpointer, outputs,
                 skipped, started: float, log: Callable[..., None]):
        self.config, self.step, self.net, self.minibatch_key = config, step, net, minibatch_key
        self.evaluation, self.steps_per_epoch, self.total_steps = evaluation, steps_per_epoch, total_steps
        self.checkpointer, self.outputs, self.skipped = checkpointer, outputs, skipped
        self.started, self.log = started, log
        self.first_step, self.before = resumed.first_step, resumed.totals
        self.params, self.opt_state = resumed.params, resumed.opt_state
        self.history, self.first_loss = resumed.history, resumed.first_loss
        self.epoch_losses, self.interval_losses = list(resumed.epoch_losses), []
        self.compiled, self.memory = None, self.before.get("memory", {})
        self.compile_time = self.before.get("compile_time_s", 0.0)
        self.train_time, self.trained_examples = 0.0, 0
        # The newest checkpoint; ``at``: minibatches done once the one in progress is (the step
        # an interrupted run names, a history entry's step, a checkpoint's number).
        self.last_saved = self.at = self.first_step
        self.loop_start = None  # after compilation: the ETA's clock
        self.warned: set[str] = set()
        self.meter = None
        self.metrics, self.throughput = None, 0.0  # of the latest minibatch
        self.lead = jax.process_index() == 0

    def totals(self) -> dict:
        """Training time, examples and wall time over every attempt, compile time and memory."""
        before = self.before
        return {"train_time_s": before.get("train_time_s", 0.0) + self.train_time,
                "trained_examples": before.get("trained_examples", 0) + self.trained_examples,
                "wall_time_s": before.get("wall_time_s", 0.0) + time.time() - self.started,
                "compile_time_s": self.compile_time, "memory": self.memory}

    def run(self, batches: data_loader.TrainBatches) -> None:
        """Train every minibatch ``batches`` yields; closes ``batches`` and the checkpointer and
        flushes the outputs whatever happens. Ctrl-C (never lost, `safjax.ctrl_c`): KeyboardInterrupt
        with `interrupted_line`; a non-finite loss: FloatingPointError naming the minibatch and the
        last good checkpoint."""
        try:
            with ctrl_c.kept() as interrupt:
                self._loop(batches, interrupt)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(interrupted_line(self.config.workdir, self.at, self.total_steps,
                                                     self.last_saved)) from None
        finally:
            if self.meter is not None:
                self.meter.close()
            batches.close()
            if self.checkpointer:
                self.checkpointer.close()
            if self.outputs:
                self.outputs.flush()

    def _loop(self, batches: data_loader.TrainBatches, interrupt) -> None:
        """`run`'s minibatches; ``interrupt.received``: a Ctrl-C whose KeyboardInterrupt Python
        swallowed (`safjax.ctrl_c`), raised again here."""
        for global_step, epoch, index, inputs, labels in batches:
            if interrupt.received:
                raise KeyboardInterrupt
            if global_step != self.at:  # guards the restored iterator state: never the wrong minibatch
                raise ValueError(f"the input pipeline yielded minibatch {global_step + 1} where {self.at + 1} "
                                 "was due: rerun with another --data_workers to restart it from the checkpoint.")
            self.at = global_step + 1
            self._train(global_step, epoch, index, inputs, labels, batches)
            if index == self.steps_per_epoch - 1:
                self._end_epoch(epoch)
            self._maybe_save(batches)
        if interrupt.received:
            raise KeyboardInterrupt

    def _compile(self, inputs, labels) -> None:
        tick = time.time()
        self.log("compiling the training step …", end="")
        self.compiled = self.step.jitted.lower(self.params, self.opt_state, inputs, labels,
                                               self.minibatch_key(0)).compile()
        self.memory = memory_figures(self.compiled)
        self.compile_time = time.time() - tick
        self.log(f" done in {self.compile_time:.1f} s")
        self.loop_start = time.time()

    def _train(self, global_step: int, epoch: int, index: int, inputs, labels, batches) -> None:
        """One minibatch: the step, its loss checked and recorded, the progress line."""
        if self.compiled is None:
            self._compile(inputs, labels)
        config = self.config
        if self.meter is None:
            self.meter = progress.Progress(self.steps_per_epoch * config.batch_size,
                                           f"epoch {epoch + 1}/{config.epochs}", "examples", interval_s=30.0,
                                           enabled=self.lead, initial=index * config.batch_size)
        tick = time.time()
        self.params, self.opt_state, self.metrics = self.compiled(
            self.params, self.opt_state, inputs, labels, self.minibatch_key(global_step))
        self.skipped.note(batches.skipped)
        loss = float(self.metrics.loss)
        if not math.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss ({loss}) at minibatch {global_step + 1} "
                                     f"(epoch {epoch + 1}){self._last_good()}; lower --learning_rate.")
        self.train_time += time.time() - tick
        self.trained_examples += config.batch_size
        self.first_loss = loss if self.first_loss is None else self.first_loss
        self.epoch_losses.append(loss)
        self.interval_losses.append(loss)
        self.throughput = self._throughput()
        logged = self.at % config.log_every == 0 and index != self.steps_per_epoch - 1
        self.meter.update(config.batch_size, f"loss {np.mean(self.interval_losses):.4f}  run ETA {self._eta()}",
                          force=logged)
        if logged:
            if self.outputs:
                self.outputs.log_step(self.at, epoch + 1, float(np.mean(self.interval_losses)), self.throughput)
            self.interval_losses = []

    def _last_good(self) -> str:
        if not self.checkpointer:
            return ""
        if not self.last_saved:
            return "; no checkpoint had been saved yet"
        return f"; the last good checkpoint is minibatch {self.last_saved} in {self.checkpointer.directory}"

    def _throughput(self) -> float:
        totals = self.totals()
        return totals["trained_examples"] / max(totals["train_time_s"], 1e-9)

    def _eta(self) -> str:
        run_here = self.at - self.first_step
        if not run_here or self.loop_start is None:
            return "?"
        return progress.clock((time.time() - self.loop_start) / run_here * (self.total_steps - self.at))

    def _end_epoch(self, epoch: int) -> None:
        """Evaluate, append the epoch to the history, print its line and any new learning warning."""
        self.meter.close()
        self.meter = None
        evaluation, eval_skipped = self.evaluation, []
        accuracy = evaluation.evaluate(self.params, evaluation.test_set, evaluation.batch_size,
                                       parallel.model_state(self.net, self.opt_state), evaluation.workers,
                                       eval_skipped)
        self.skipped.note(eval_skipped)
        rates = [round(float(r), 4) for r in self.metrics.firing_rates]
        self.history.append({"step": self.at, "epoch": epoch + 1, "train_loss": float(np.mean(self.epoch_losses)),
                             "test_accuracy": accuracy, "firing_rates": rates,
                             "examples_per_second": self.throughput})
        self.epoch_losses, self.interval_losses = [], []
        self.log(f"epoch {epoch + 1:3d}/{self.config.epochs}  loss {self.history[-1]['train_loss']:.4f}  "
                 f"test accuracy {accuracy:.4f}  firing {rates}  {self.throughput:7.1f} examples/s  "
                 f"{time.time() - self.started:6.1f} s  ETA {self._eta()}")
        if self.outputs:
            self.outputs.log_epoch(self.history[-1])
        found = learning_monitor.learning_warnings(self.history, self.first_loss, evaluation.num_classes)
        for kind in found.keys() - self.warned:
            self.log(found[kind])
        self.warned.update(found)

    def _maybe_save(self, batches: data_loader.TrainBatches) -> None:
        done = self.at
        if not self.checkpointer or (done % self.config.checkpoint_every and done != self.total_steps):
            return
        with ctrl_c.deferred():  # Ctrl-C: after the save, which it then names
            self.checkpointer.save(done, {"params": self.params, "opt_state": self.opt_state},
                                   {"history": self.history, "epoch_losses": self.epoch_losses,
                                    "first_loss": self.first_loss, "totals": self.totals(),
                                    "data": data_state(batches, done), "skipped_examples": self.skipped.all()})
            self.last_saved = done


def data_state(batches: data_loader.TrainBatches, next_step: int) -> dict:
    """What a checkpoint keeps of the input pipeline: its grain iterator state (the position of
    minibatch ``next_step``) and the worker and process counts that state is valid for."""
    return {"next_step": next_step, "workers": batches.workers, "processes": jax.process_count(),
            "iterator": batches.state()}


def memory_figures(compiled) -> dict:
    """Per-device bytes of the compiled step (XLA's memory analysis; deterministic)."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return {}
    figures = {"temp_bytes": int(analysis.temp_size_in_bytes),
               "argument_bytes": int(analysis.argument_size_in_bytes),
               "output_bytes": int(analysis.output_size_in_bytes)}
    figures["peak_bytes"] = sum(figures.values())
    return figures
