"""The trainer: data → model → any registered method, epoch by epoch, with progress.

`experiments/train.py` only parses flags and calls `train_and_evaluate(config)`. With a
``workdir`` the run writes, as it goes, ``metrics.jsonl`` (one line per logged minibatch and per
epoch), TensorBoard events, checkpoints every ``checkpoint_every`` minibatches (a rerun of the
same command resumes from the newest readable one and ends exactly like an uninterrupted run),
and at the end ``results.json`` and ``plots/`` (curves, firing rates, a spike raster). A registered
model is an ``nn.Sequential`` (a `safjax.Network`) or a plain Flax NNX module of Flax layers and
`safjax.nn` cells (one time step per call), trained through its step model (`initial_state`). One run at
a time holds a workdir (`safjax.run_record.lock`); Ctrl-C ends a run with one line naming the
checkpoint a rerun resumes from, and a full disk with one line naming the workdir.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from safjax import (checkpoints, data_loader, datasets, encoding, input_pipeline, learning_monitor, models, optimizers,
                    precision, parallel, progress, run_record, run_outputs, simulate)
from safjax import network as network_lib
from safjax import nn
from safjax.engine.flax_model import FlaxModel
from safjax.checkpoints import Checkpointer
from safjax.experiment_config import ExperimentConfig
from safjax.run_outputs import RESULTS_FILE, RunOutputs

__all__ = ["ExperimentConfig", "train_and_evaluate"]


def _log(message: str, end: str = "\n") -> None:
    if jax.process_index() == 0:
        print(message, end=end, flush=True)


def _time_major(temporal: bool, time_steps: int):
    """Batch-major data → time-major network input [T, B, ...], applied inside the jitted step."""
    if temporal:
        return lambda frames: jnp.swapaxes(frames, 0, 1)  # [B, T, ...] event frames
    return lambda images: encoding.direct(images, time_steps)  # constant current over T


def _load_data(config: ExperimentConfig):
    train_set = datasets.load(config.dataset, "train", data_dir=config.data_dir or None,
                              time_steps=config.time_steps, image_size=config.image_size,
                              skip_bad_examples=config.skip_bad_examples)
    test_set = datasets.load(config.dataset, "test", data_dir=config.data_dir or None,
                             time_steps=config.time_steps, image_size=config.image_size,
                             skip_bad_examples=config.skip_bad_examples)
    if train_set.temporal and train_set.time_steps != config.time_steps:
        raise ValueError(f"--time_steps={config.time_steps} is invalid: the {config.dataset} frames "
                         f"have T = {train_set.time_steps}.")
    return _subset(train_set, config.train_examples, "train_examples"), \
        _subset(test_set, config.test_examples, "test_examples")


def _subset(dataset: datasets.Dataset, size: int, flag: str) -> datasets.Dataset:
    """A fixed (seed-0) random subset of ``size`` examples; all of them for size 0."""
    if size == 0:
        return dataset
    if size > len(dataset):
        raise ValueError(f"--{flag}={size} is invalid: the split has only {len(dataset)} examples.")
    chosen = np.sort(np.random.default_rng(0).permutation(len(dataset))[:size])
    return datasets.subset(dataset, chosen)


def _make_evaluator(net, network_params, to_time_major, mesh):
    """``evaluate(params, test_set, batch_size, model_state=None, workers=0) -> accuracy``: every test
    example exactly once, in padded global batches sharded like the training data (each process
    feeds its rows), made by ``workers`` data processes; ``model_state``: the running statistics a
    Flax model's BatchNorm evaluates with; ``skipped``: a list that collects the unreadable examples
    a data set loaded with ``skip_bad`` skipped (`data_loader.eval_batches`)."""
    batch_sharding = NamedSharding(mesh, P(parallel.DATA_AXIS))

    @jax.jit
    def correct(params, model_state, inputs, labels, valid):
        model = net if model_state is None else net.bind_model_state(model_state)
        outputs, _ = simulate.run(model, network_params(params), to_time_major(inputs))
        hits = (jnp.argmax(outputs.sum(0), -1) == labels) & valid
        return jnp.sum(hits)

    def evaluate(params, test_set, batch_size, model_state=None, workers=0, skipped=None):
        rows = input_pipeline.process_rows(batch_size, jax.process_index(), jax.process_count())
        total = 0
        with contextlib.closing(data_loader.eval_batches(test_set, batch_size, rows, workers, skipped)) as batches:
            for inputs, labels, num_valid in batches:  # closed (workers ended) on any exception too
                valid = np.arange(len(labels)) < num_valid  # padding sits at the end of each slice
                arrays = [jax.make_array_from_process_local_data(batch_sharding, a)
                          for a in (inputs, labels, valid)]
                total += int(correct(params, model_state, *arrays))
        return total / len(test_set)

    return evaluate


def _check_labels(dataset: datasets.Dataset, split: str) -> None:
    network_lib.check_label_range(dataset.labels, dataset.num_classes,
                                  f"the {split} labels of {dataset.name}")


def _finished_results(workdir: str, config: ExperimentConfig) -> dict | None:
    """The results.json of a finished run of ``config`` in ``workdir`` (its settings already
    checked), or None when the run is not finished (or is being extended to more epochs)."""
    results = run_outputs.read_results(workdir)
    return results if results is not None and results.get("epochs_completed") == config.epochs else None


def _prepare_workdir(config: ExperimentConfig, devices: int, restart: bool) -> dict | None:
    """Check the workdir up front and that it holds this run (or none); returns the results of an
    already finished identical run, else None (see `safjax.run_record`)."""
    workdir = config.workdir
    if restart:
        if jax.process_index() == 0:
            _log_restart(workdir, run_record.restart(workdir), run_record.other_files(workdir))
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("safjax restart")
    if not run_record.has_run(workdir):
        return None
    stored = run_record.load(workdir)
    if stored is None:
        _log(f"note: {workdir} holds checkpoints but no {run_record.CONFIG_FILE} (an older safjax): its "
             "settings cannot be checked; resuming as if they match.")
        return None
    differing, notes = run_record.compare(stored, run_record.record(config, devices))
    if differing:
        raise ValueError(run_record.refusal(workdir, differing))
    finished = _finished_results(workdir, config)
    if finished is None and notes:
        _log(f"note: continuing the run in {workdir} with {'; '.join(notes)}")
    return finished


def _log_restart(workdir: str, deleted: list[str], kept: list[str], shown: int = 5) -> None:
    """One line: what --restart deleted and which files (not safjax's) it left in ``workdir``."""
    if deleted:
        _log(f"--restart: deleted the earlier run's checkpoints and outputs in {workdir} ({len(deleted)} entries)")
    if kept:
        names = ", ".join(kept[:shown]) + (f" and {len(kept) - shown} more" if len(kept) > shown else "")
        _log(f"--restart: kept {len(kept)} file(s) in {workdir} that safjax did not write: {names}")


def _interrupted(workdir: str, at: int, total_steps: int, saved: int) -> str:
    """The one line of a run stopped by Ctrl-C at minibatch ``at``; ``saved``: its newest checkpoint."""
    where = f"interrupted at minibatch {at} of {total_steps}"
    if not workdir:
        return f"{where}; nothing was saved (no --workdir)."
    if not saved:
        return f"{where}, before its first checkpoint: rerunning the same command starts it over."
    return (f"{where}; rerun the same command to resume from the checkpoint at minibatch {saved} in "
            f"{os.path.join(workdir, 'checkpoints')} (it then ends exactly like an uninterrupted run).")


def _disk_full(workdir: str) -> run_outputs.DiskFullError:
    return run_outputs.DiskFullError(
        f"no space left on the disk of --workdir={workdir} (or its quota is used up): free space there, or "
        "copy the workdir to another disk, and rerun the same command to resume from its newest checkpoint.")


class SkippedExamples:
    """The unreadable examples a run skipped (``--skip_bad_examples``): each logged once, in one line.
    With several processes, those of process 0's rows (each process reads its own rows)."""

    def __init__(self, log):
        self.seen: set[str] = set()
        self._log = log

    def note(self, reasons) -> None:
        for reason in reasons:
            if reason not in self.seen:
                self.seen.add(reason)
                self._log(f"skipped (--skip_bad_examples): {reason}")

    def all(self) -> list[str]:
        return sorted(self.seen)


class RunSetup(NamedTuple):
    """What a run starts from (before any checkpoint is restored)."""

    net: object  # the step model trained: a safjax.Network, or a Flax model's FlaxModel
    method: object  # safjax.methods.Method
    params: object  # the method's params (the network's, plus e.g. TL-BPTT's heads); plain dicts
    optimizer: object  # optax.GradientTransformation
    opt_state: object  # the optimizer's state; for a model with running statistics (parallel.train_state)
    #                    the pair (optimizer state, running statistics)
    eval_net: object  # the step model evaluated and counted: dropout off (for a Network, ``net``)


def initial_state(config: ExperimentConfig, train_set: datasets.Dataset) -> RunSetup:
    """The model, method, initial params, optimizer and its state of ``config`` for ``train_set``
    (also the template a checkpoint of the run is restored into, e.g. by `safjax.deploy`).

    A factory of `safjax.models.MODELS` returns an ``nn.Sequential`` (its `Network` is trained) or a
    plain Flax NNX module: then the step model is ``FlaxModel(module).with_input(input shape,
    float32)``, its params the module's ``nnx.Param`` values as plain nested dicts
    (``nnx.to_pure_dict``: what checkpoints store), and evaluation runs a copy in eval mode."""
    steps_per_epoch = len(train_set) // config.batch_size
    model = models.MODELS[config.model_name](
        nnx.Rngs(config.seed), config.neuron, config.leak, config.threshold,
        train_set.num_classes, train_set.input_shape, width=config.width, dropout=config.dropout,
        reset=config.reset,
    )
    method = config.build_method()
    if isinstance(model, nn.Sequential):
        net = eval_net = precision.with_precision(model.network, config.precision)
        network_params = model.params()
    else:
        net, eval_net = _flax_step_models(model, config, train_set.input_shape)
        method.validate(net)  # before init_params (e.g. TL-BPTT's heads need a Sequential): one line
        network_params = nnx.to_pure_dict(net.params_state)
    params = method.init_params(net, network_params, jax.random.key(config.seed))
    updates = method.updates_per_minibatch(config.time_steps)
    optimizer = optimizers.make_optimizer(config.optimizer, config.learning_rate, config.momentum,
                                          config.schedule, config.epochs, updates * steps_per_epoch,
                                          config.gradient_clip)
    opt_state = parallel.train_state(net, optimizer.init(params))  # with running statistics, if any
    return RunSetup(net, method, params, optimizer, opt_state, eval_net)


def _flax_step_models(module, config: ExperimentConfig, input_shape) -> tuple[FlaxModel, FlaxModel]:
    """(the trained step model, the evaluated one) of the plain Flax model ``module``; the second is
    built from a copy in eval mode (``nnx.Dropout`` off: unbound, it would apply one fixed mask)."""
    name = config.model_name
    if not isinstance(module, nnx.Module):
        raise ValueError(f"--model={name}: its factory returned a {type(module).__name__}; a registered model "
                         "must return an nn.Sequential or a Flax NNX module (nnx.Module).")
    if config.precision != "f32":
        raise ValueError(f"--precision={config.precision} is invalid for --model={name}, a plain Flax model "
                         f"({type(module).__name__}): set its layers' dtypes in its factory instead, or use "
                         "--precision=f32.")
    evaluated = nnx.clone(module)
    evaluated.eval()
    return (FlaxModel(module).with_input(input_shape, jnp.float32),
            FlaxModel(evaluated).with_input(input_shape, jnp.float32))


def train_and_evaluate(config: ExperimentConfig, restart: bool = False, started: float | None = None) -> dict:
    """Train, evaluate on the test split after every epoch, return (and save) the results.

    With a ``workdir``, a rerun continues the run stored there (from its newest readable
    checkpoint; a finished one is not trained again) and refuses, in one line, a configuration that
    would change its results (`safjax.run_record`); ``restart=True`` deletes that run first (only
    the files safjax wrote). ValueError when another run holds the workdir; `run_outputs.DiskFullError`
    (one line) when its disk fills up; KeyboardInterrupt (Ctrl-C) in the training loop carries one
    line saying where a rerun resumes.
    ``started`` is when the process started (`time.time()`), for the wall time reported at the end;
    default: now.
    """
    started = time.time() if started is None else started
    config.validate()
    if not config.workdir:
        return _train_and_evaluate(config, restart, started)
    run_record.check_workdir(config.workdir)
    try:
        with run_record.lock(config.workdir, jax.process_index()):  # one run per workdir at a time
            return _train_and_evaluate(config, restart, started)
    except Exception as error:
        if run_outputs.is_disk_full(error):
            raise _disk_full(config.workdir) from None
        raise


def _train_and_evaluate(config: ExperimentConfig, restart: bool, started: float) -> dict:
    """`train_and_evaluate` of a validated ``config`` whose workdir (if any) this process holds."""
    mesh = parallel.make_mesh(config.num_devices or None)
    num_devices = mesh.devices.size
    if config.batch_size % num_devices:
        raise ValueError(f"--batch_size={config.batch_size} is invalid: expected a multiple of the "
                         f"{num_devices} devices (or set --num_devices).")
    if config.workdir:
        finished = _prepare_workdir(config, num_devices, restart)
        if finished is not None:
            _log(f"{config.workdir} already holds this finished run (test accuracy "
                 f"{finished['test_accuracy']:.4f}, {os.path.join(config.workdir, RESULTS_FILE)}): nothing to "
                 "train; pass --restart to train it again.")
            return finished
    else:
        _log("no --workdir: nothing is saved (no checkpoints, metrics, results.json or plots); "
             "pass --workdir=DIR to keep them.")
    train_set, test_set = _load_data(config)
    _check_labels(train_set, "train")
    _check_labels(test_set, "test")
    steps_per_epoch = len(train_set) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"--batch_size={config.batch_size} is invalid: it exceeds the "
                         f"{len(train_set)} training examples.")
    total_steps = config.epochs * steps_per_epoch
    net, method, params, optimizer, opt_state, eval_net = initial_state(config, train_set)
    train_config = config.train_config()
    to_time_major = _time_major(train_set.temporal, config.time_steps)
    step = parallel.make_parallel_train_step(method, net, optimizer, mesh, train_config,
                                             prepare_inputs=to_time_major, donate=True)
    evaluate = _make_evaluator(eval_net, method.network_params, to_time_major, mesh)
    eval_batch = math.ceil(config.eval_batch_size / num_devices) * num_devices

    checkpointer = Checkpointer(os.path.join(config.workdir, "checkpoints")) if config.workdir else None
    first_step, history, resumed_epoch_losses, first_loss, before, saved_data = 0, [], [], None, {}, None
    skipped = SkippedExamples(_log)
    if checkpointer:
        restored = checkpointer.restore_latest({"params": params, "opt_state": opt_state}, log=_log)
        if restored:
            first_step, state, meta = restored
            if first_step > total_steps:
                checkpointer.close()
                raise ValueError(
                    f"--workdir={config.workdir} holds a run already trained for {first_step} minibatches, more "
                    f"than --epochs={config.epochs} ({total_steps} minibatches): pass a larger --epochs, use a "
                    "new --workdir, or pass --restart to start over.")
            params, opt_state, history = state["params"], state["opt_state"], meta["history"]
            resumed_epoch_losses = meta["epoch_losses"]  # losses of the epoch the run stopped in
            first_loss = meta.get("first_loss")
            before = meta.get("totals", {})  # time, examples and memory of the earlier attempts
            saved_data = meta.get("data")  # the input pipeline's position (none in older checkpoints)
            skipped.seen.update(meta.get("skipped_examples", []))
            _log(f"resumed from {checkpointer.directory}/{first_step} (minibatch {first_step} of {total_steps})")
    if config.workdir and jax.process_index() == 0:
        run_record.save(config.workdir, run_record.record(config, num_devices))
        if first_step < total_steps and os.path.exists(os.path.join(config.workdir, RESULTS_FILE)):
            os.remove(os.path.join(config.workdir, RESULTS_FILE))  # a run extended to more epochs: not finished
    outputs = RunOutputs(config.workdir, first_step, log=_log) if config.workdir and jax.process_index() == 0 else None
    params, opt_state = parallel.replicate((params, opt_state), mesh)
    rows = input_pipeline.process_rows(config.batch_size, jax.process_index(), jax.process_count())
    run_key = jax.random.fold_in(jax.random.key(config.seed), 1)  # 0 went to the method's init_params

    # Minibatch ``global_step``'s key: a function of the step alone, so a resumed run draws exactly
    # what an uninterrupted one does. Computed by a jitted function with a replicated output, which
    # every process can make (a `device_put` onto the global mesh cannot, with several processes).
    minibatch_key = jax.jit(lambda global_step: jax.random.fold_in(run_key, global_step),
                            out_shardings=NamedSharding(mesh, P()))

    def transfer(item):
        global_step, epoch, index, inputs, labels = item
        return (global_step, epoch, index,
                jax.make_array_from_process_local_data(step.inputs_sharding, inputs),
                jax.make_array_from_process_local_data(step.labels_sharding, labels))

    workers = data_loader.resolve_workers(config.data_workers, train_set)
    batches = _train_batches(config, train_set, first_step, total_steps, rows, workers, transfer,
                             saved_data)
    clipping = f", gradients clipped to norm {config.gradient_clip:g}" if config.gradient_clip else ""
    settings = ", ".join(f"{k}={v!r}" for k, v in method.settings)
    _log(f"{config.method}{f'({settings})' if settings else ''} on {config.dataset} ({len(train_set)} train / {len(test_set)} test), "
         f"model {config.model_name}, T={config.time_steps}, {config.epochs} epochs of "
         f"{steps_per_epoch} minibatches of {config.batch_size}, {num_devices} device(s){clipping}")
    if config.workdir:
        _log(f"outputs in {os.path.abspath(config.workdir)}: checkpoints every {config.checkpoint_every} "
             "minibatches, metrics.jsonl, tensorboard/, and at the end results.json and plots/")
    compiled, memory = None, before.get("memory", {})
    compile_time = before.get("compile_time_s", 0.0)
    train_time, trained_examples, interval_losses, last_saved = 0.0, 0, [], first_step
    loop_start = None  # after compilation: the ETA's clock
    epoch_losses = list(resumed_epoch_losses)
    warned: set[str] = set()
    meter = None
    lead = jax.process_index() == 0
    at = first_step  # the minibatch in progress, for the line of an interrupted run

    def totals_so_far() -> dict:
        return {"train_time_s": before.get("train_time_s", 0.0) + train_time,
                "trained_examples": before.get("trained_examples", 0) + trained_examples,
                "wall_time_s": before.get("wall_time_s", 0.0) + time.time() - started,
                "compile_time_s": compile_time, "memory": memory}

    def eta(done: int) -> str:
        run_here = done - first_step
        if not run_here or loop_start is None:
            return "?"
        return progress.clock((time.time() - loop_start) / run_here * (total_steps - done))

    try:
        for global_step, epoch, index, inputs, labels in batches:
            if global_step != at:  # guards the restored iterator state: never train on the wrong minibatch
                raise ValueError(f"the input pipeline yielded minibatch {global_step + 1} where {at + 1} was "
                                   "due: rerun with another --data_workers to restart it from the checkpoint.")
            tick, at = time.time(), global_step + 1
            if compiled is None:
                _log("compiling the training step …", end="")
                compiled = step.jitted.lower(params, opt_state, inputs, labels, minibatch_key(0)).compile()
                memory = _memory_figures(compiled)
                compile_time = time.time() - tick
                _log(f" done in {compile_time:.1f} s")
                tick = loop_start = time.time()
            if meter is None:
                meter = progress.Progress(steps_per_epoch * config.batch_size, f"epoch {epoch + 1}/{config.epochs}",
                                          "examples", interval_s=30.0, enabled=lead, initial=index * config.batch_size)
            params, opt_state, metrics = compiled(params, opt_state, inputs, labels, minibatch_key(global_step))
            skipped.note(batches.skipped)
            loss = float(metrics.loss)
            if not math.isfinite(loss):
                kept = ""
                if checkpointer:
                    kept = (f"; the last good checkpoint is minibatch {last_saved} in {checkpointer.directory}"
                            if last_saved else "; no checkpoint had been saved yet")
                raise FloatingPointError(
                    f"non-finite training loss ({loss}) at minibatch {global_step + 1} (epoch {epoch + 1})"
                    f"{kept}; lower --learning_rate.")
            train_time += time.time() - tick
            trained_examples += config.batch_size
            first_loss = loss if first_loss is None else first_loss
            epoch_losses.append(loss)
            interval_losses.append(loss)
            done = global_step + 1
            totals = totals_so_far()
            throughput = totals["trained_examples"] / max(totals["train_time_s"], 1e-9)
            logged = done % config.log_every == 0 and index != steps_per_epoch - 1
            meter.update(config.batch_size, f"loss {np.mean(interval_losses):.4f}  run ETA {eta(done)}", force=logged)
            if logged:
                if outputs:
                    outputs.log_step(done, epoch + 1, float(np.mean(interval_losses)), throughput)
                interval_losses = []
            if index == steps_per_epoch - 1:
                meter.close()
                meter = None
                eval_skipped = []
                accuracy = evaluate(params, test_set, eval_batch, parallel.model_state(net, opt_state),
                                    data_loader.resolve_workers(config.data_workers, test_set), eval_skipped)
                skipped.note(eval_skipped)
                rates = [round(float(r), 4) for r in metrics.firing_rates]
                history.append({"step": done, "epoch": epoch + 1, "train_loss": float(np.mean(epoch_losses)),
                                "test_accuracy": accuracy, "firing_rates": rates,
                                "examples_per_second": throughput})
                epoch_losses, interval_losses = [], []
                _log(f"epoch {epoch + 1:3d}/{config.epochs}  loss {history[-1]['train_loss']:.4f}  "
                     f"test accuracy {accuracy:.4f}  firing {rates}  {throughput:7.1f} examples/s  "
                     f"{time.time() - started:6.1f} s  ETA {eta(done)}")
                if outputs:
                    outputs.log_epoch(history[-1])
                found = learning_monitor.learning_warnings(history, first_loss, train_set.num_classes)
                for kind in found.keys() - warned:
                    _log(found[kind])
                warned.update(found)
            if checkpointer and (done % config.checkpoint_every == 0 or done == total_steps):
                with checkpoints.interrupts_deferred():  # Ctrl-C: after the save, which it then names
                    checkpointer.save(done, {"params": params, "opt_state": opt_state},
                                      {"history": history, "epoch_losses": epoch_losses, "first_loss": first_loss,
                                       "totals": totals_so_far(), "data": _data_state(batches, done),
                                       "skipped_examples": skipped.all()})
                    last_saved = done
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_interrupted(config.workdir, at, total_steps, last_saved)) from None
    finally:
        if meter is not None:
            meter.close()
        batches.close()
        if checkpointer:
            checkpointer.close()
        if outputs:
            outputs.flush()
    totals = totals_so_far()
    results = {
        **config.as_flags(),
        "model": config.model_name,
        "gradient_clip": config.gradient_clip,
        "num_devices": num_devices,
        "num_processes": jax.process_count(),
        "epochs_completed": len(history),
        "test_accuracy": history[-1]["test_accuracy"],
        "train_loss_history": [h["train_loss"] for h in history],
        "test_accuracy_history": [h["test_accuracy"] for h in history],
        # Summed over every attempt of a resumed run (from the checkpoint metadata), so a resumed
        # run reports the figures of an uninterrupted one.
        "examples_per_second": (totals["trained_examples"] / max(totals["train_time_s"], 1e-9)
                                if totals["trained_examples"] else None),
        "time_per_epoch_s": totals["train_time_s"] / len(history) if totals["trained_examples"] else None,
        "compile_time_s": totals["compile_time_s"],
        "peak_memory_bytes": memory.get("peak_bytes"),
        "compiled_memory": memory,
        # Start-up included, summed over attempts: each earlier attempt up to its last checkpoint.
        "wall_time_s": totals["wall_time_s"],
        "device_kind": jax.devices()[0].device_kind,
        "skipped_examples": skipped.all(),  # unreadable examples --skip_bad_examples replaced, over all attempts
        # Recomputed from the whole history, so a resumed or rerun run reports the same warnings.
        "warnings": list(learning_monitor.learning_warnings(history, first_loss, train_set.num_classes).values()),
    }
    if parallel.model_state(net, opt_state) is not None:  # evaluated with the trained running statistics
        eval_net = eval_net.bind_model_state(jax.device_get(parallel.model_state(net, opt_state)))
    if lead:  # synaptic operations and energy per inference on the test set (safjax.energy)
        results.update(_energy_results(eval_net, method.network_params(params), test_set, to_time_major,
                                       config.eval_batch_size))
    if outputs:
        spikes = _example_spikes(eval_net, method.network_params(params), test_set, to_time_major)
        outputs.finish(results, history, spikes, _layer_names(eval_net), title=run_outputs.run_title(results))
    elapsed = time.time() - started
    earlier = f"; {before.get('wall_time_s', 0.0) + elapsed:.1f} s over all attempts" if first_step else ""
    _log(f"final test accuracy: {results['test_accuracy']:.4f} (wall time {elapsed:.1f} s including "
         f"start-up: compilation {compile_time if compiled else 0.0:.1f} s, training {train_time:.1f} s{earlier})")
    return results


def _data_state(batches: data_loader.TrainBatches, next_step: int) -> dict:
    """What a checkpoint keeps of the input pipeline: its grain iterator state (the position of
    minibatch ``next_step``) and the worker and process counts that state is valid for."""
    return {"next_step": next_step, "workers": batches.workers, "processes": jax.process_count(),
            "iterator": batches.state()}


def _train_batches(config: ExperimentConfig, train_set, first_step: int, total_steps: int, rows: slice,
                   workers: int, transfer, saved: dict | None) -> data_loader.TrainBatches:
    """The run's minibatches from ``first_step`` on: from the checkpoint's iterator state ``saved``
    (`_data_state`) when it was saved with this many workers and processes, else started at
    ``first_step`` (the same minibatches: each is a function of (seed, step) alone)."""

    def start(state):
        return data_loader.train_batches(train_set, batch_size=config.batch_size, seed=config.seed,
                                         first_step=first_step, total_steps=total_steps, augment=config.augment,
                                         rows=rows, workers=workers, transfer=transfer, state=state)

    usable = (saved is not None and saved.get("next_step") == first_step and saved.get("workers") == workers
              and saved.get("processes") == jax.process_count())
    if saved is not None and not usable:
        _log(f"note: the checkpoint's data-pipeline state is for {saved.get('workers')} data worker(s) and "
             f"{saved.get('processes')} process(es), this run has {workers} and {jax.process_count()}: the "
             f"pipeline restarts at minibatch {first_step} (the same minibatches).")
    return start(saved["iterator"] if usable else None)


def _memory_figures(compiled) -> dict:
    """Per-device bytes of the compiled step (XLA's memory analysis; deterministic)."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return {}
    figures = {"temp_bytes": int(analysis.temp_size_in_bytes),
               "argument_bytes": int(analysis.argument_size_in_bytes),
               "output_bytes": int(analysis.output_size_in_bytes)}
    figures["peak_bytes"] = sum(figures.values())
    return figures


def _layer_names(net) -> list[str]:
    """One name per spiking layer (`run_outputs.layer_names`) or, for a Flax model, per cell: its
    attribute path and channels, e.g. ``layer1.0.lif2 (64)``."""
    if not isinstance(net, FlaxModel):
        return run_outputs.layer_names(net)
    return [f"{'.'.join(map(str, path))} ({shape[-1] if shape else 1})"
            for path, shape in zip(net.cell_paths, net.cell_shapes)]


def _example_spikes(net, params, test_set, to_time_major) -> list[np.ndarray]:
    """Spikes [T, N] per spiking layer of the first test example (for the raster plot)."""
    inputs = to_time_major(jnp.asarray(input_pipeline.make_batch(
        test_set, np.arange(1), augment=False, seed=0, epoch=0, step=0)[0]))
    params = jax.device_get(params)
    _, spikes = jax.jit(lambda p, x: simulate.run(net, p, x))(params, inputs)
    return [np.asarray(s[:, 0]).reshape(s.shape[0], -1) for s in spikes]


def test_set_operations(net, params, test_set, to_time_major, batch_size) -> dict:
    """The `safjax.energy` report (synaptic operations per inference) of the plain SNN ``net`` with
    its network ``params`` over the whole test set, in ``batch_size`` batches on the first device;
    ``to_time_major`` is the run's input preparation (`_time_major`). Raises ValueError for a
    network whose operators cannot be counted."""
    from safjax import energy

    batches = ((to_time_major(jnp.asarray(inputs)), num_valid)
               for inputs, _, num_valid in data_loader.eval_batches(test_set, batch_size))
    return energy.dataset_report(net, jax.device_get(params), batches, analog_input=not test_set.temporal)


def _energy_results(net, params, test_set, to_time_major, batch_size) -> dict:
    """``synaptic_operations`` (`test_set_operations`) and ``energy_estimate`` of the run; for a
    network that cannot be counted (e.g. a plain Flax model) both are None and
    ``synaptic_operations_note`` says why, in one line."""
    from safjax import energy

    try:
        report = test_set_operations(net, params, test_set, to_time_major, batch_size)
    except ValueError as error:
        _log(f"note: no synaptic-operation count or energy estimate: {error}")
        return {"synaptic_operations": None, "energy_estimate": None, "synaptic_operations_note": str(error)}
    _log(energy.summary_line(report))
    return {"synaptic_operations": report, "energy_estimate": energy.energy(report)}
