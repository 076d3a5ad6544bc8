"""The trainer: data → model → any registered method, epoch by epoch, with progress.

`experiments/train.py` only parses flags and calls `train_and_evaluate(config)`. With a
``workdir`` the run writes, as it goes, ``metrics.jsonl`` (one line per logged minibatch and per
epoch), TensorBoard events, checkpoints every ``checkpoint_every`` minibatches (a rerun of the
same command resumes from the newest readable one and ends exactly like an uninterrupted run),
and at the end ``results.json`` and ``plots/`` (curves, firing rates, a spike raster). A registered
model is an ``nn.Sequential`` (a `safjax.Network`) or a plain Flax NNX module of Flax layers and
`safjax.nn` cells (one time step per call), trained through its step model (`initial_state`). One run at
a time holds a workdir (`safjax.run_record.lock`); Ctrl-C ends a run with one line naming the
checkpoint a rerun resumes from, and a full disk with one line naming the workdir. The minibatch
loop itself (step, evaluation, checkpoints, totals over attempts) is `safjax.training_loop`.
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

from safjax import (data_loader, datasets, encoding, input_pipeline, learning_monitor, models, optimizers, parallel,
                    precision, run_record, run_outputs, simulate, training_loop)
from safjax import network as network_lib
from safjax import nn
from safjax.engine.flax_model import FlaxModel
from safjax.checkpoints import Checkpointer
from safjax.experiment_config import ExperimentConfig
from safjax.run_outputs import RESULTS_FILE, RunOutputs
from safjax.skipped_examples import SkippedExamples

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
    """``evaluate(params, test_set, batch_size, model_state=None, workers=0, skipped=None) -> accuracy``: every test
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


def _disk_full(workdir: str) -> run_outputs.DiskFullError:
    return run_outputs.DiskFullError(
        f"no space left on the disk of --workdir={workdir} (or its quota is used up): free space there, or "
        "copy the workdir to another disk, and rerun the same command to resume from its newest checkpoint.")


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
    finished = _finished_run(config, num_devices, restart)
    if finished is not None:
        return finished
    train_set, test_set = _load_data(config)
    steps_per_epoch = _steps_per_epoch(config, train_set, test_set)
    total_steps = config.epochs * steps_per_epoch
    setup = initial_state(config, train_set)
    to_time_major = _time_major(train_set.temporal, config.time_steps)
    step = parallel.make_parallel_train_step(setup.method, setup.net, setup.optimizer, mesh, config.train_config(),
                                             prepare_inputs=to_time_major, donate=True)
    evaluation = training_loop.Evaluation(
        _make_evaluator(setup.eval_net, setup.method.network_params, to_time_major, mesh), test_set,
        math.ceil(config.eval_batch_size / num_devices) * num_devices,
        data_loader.resolve_workers(config.data_workers, test_set), train_set.num_classes)
    checkpointer = Checkpointer(os.path.join(config.workdir, "checkpoints")) if config.workdir else None
    resumed = _resume(config, checkpointer, setup, total_steps)
    skipped = SkippedExamples(_log, earlier=resumed.skipped, gather=config.skip_bad_examples)
    outputs = _start_outputs(config, num_devices, resumed.first_step, total_steps)
    params, opt_state = parallel.replicate((resumed.params, resumed.opt_state), mesh)
    loop = training_loop.TrainingLoop(
        config, step, setup.net, _minibatch_key(config.seed, mesh), evaluation, steps_per_epoch, total_steps,
        resumed._replace(params=params, opt_state=opt_state), checkpointer, outputs, skipped, started, _log)
    workers = data_loader.resolve_workers(config.data_workers, train_set)
    batches = _train_batches(config, train_set, resumed.first_step, total_steps, workers, _transfer(step),
                             resumed.data)
    _log_run(config, train_set, test_set, setup.method, steps_per_epoch, num_devices)
    loop.run(batches)  # closes the batches and the checkpointer, whatever happens
    results = _results(config, loop, num_devices, train_set.num_classes, skipped)
    _finish(config, loop, setup, test_set, to_time_major, outputs, results)
    elapsed = time.time() - started
    earlier = f"; {loop.before.get('wall_time_s', 0.0) + elapsed:.1f} s over all attempts" if loop.first_step else ""
    _log(f"final test accuracy: {results['test_accuracy']:.4f} (wall time {elapsed:.1f} s including start-up: "
         f"compilation {loop.compile_time if loop.compiled else 0.0:.1f} s, training {loop.train_time:.1f} s{earlier})")
    return results


def _finished_run(config: ExperimentConfig, num_devices: int, restart: bool) -> dict | None:
    """The results of the finished identical run in the workdir (after one line saying so), else None;
    checks the workdir first (`_prepare_workdir`). Without a workdir, one line: nothing is saved."""
    if not config.workdir:
        _log("no --workdir: nothing is saved (no checkpoints, metrics, results.json or plots); "
             "pass --workdir=DIR to keep them.")
        return None
    finished = _prepare_workdir(config, num_devices, restart)
    if finished is not None:
        _log(f"{config.workdir} already holds this finished run (test accuracy "
             f"{finished['test_accuracy']:.4f}, {os.path.join(config.workdir, RESULTS_FILE)}): nothing to "
             "train; pass --restart to train it again.")
    return finished


def _steps_per_epoch(config: ExperimentConfig, train_set, test_set) -> int:
    """Minibatches per epoch, after checking both splits' labels; ValueError when there are none."""
    _check_labels(train_set, "train")
    _check_labels(test_set, "test")
    steps_per_epoch = len(train_set) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"--batch_size={config.batch_size} is invalid: it exceeds the "
                         f"{len(train_set)} training examples.")
    return steps_per_epoch


def _resume(config: ExperimentConfig, checkpointer: Checkpointer | None, setup: RunSetup,
            total_steps: int) -> training_loop.Resumed:
    """The run's starting point: its newest readable checkpoint (restored into ``setup``'s params and
    optimizer state), else from scratch; ValueError when the checkpoint is past ``total_steps``."""
    restored = checkpointer.restore_latest({"params": setup.params, "opt_state": setup.opt_state},
                                           log=_log) if checkpointer else None
    if not restored:
        return training_loop.from_scratch(setup.params, setup.opt_state)
    first_step, state, meta = restored
    if first_step > total_steps:
        checkpointer.close()
        raise ValueError(
            f"--workdir={config.workdir} holds a run already trained for {first_step} minibatches, more "
            f"than --epochs={config.epochs} ({total_steps} minibatches): pass a larger --epochs, use a "
            "new --workdir, or pass --restart to start over.")
    _log(f"resumed from {checkpointer.directory}/{first_step} (minibatch {first_step} of {total_steps})")
    return training_loop.Resumed(first_step, state["params"], state["opt_state"], meta["history"],
                                 meta["epoch_losses"], meta.get("first_loss"), meta.get("totals", {}),
                                 meta.get("data"), meta.get("skipped_examples", []))


def _start_outputs(config: ExperimentConfig, num_devices: int, first_step: int, total_steps: int):
    """On process 0 with a workdir: the run's record written (a run extended to more epochs loses its
    results.json: it is not finished) and its `RunOutputs`; else None."""
    if not config.workdir or jax.process_index() != 0:
        return None
    run_record.save(config.workdir, run_record.record(config, num_devices))
    results_file = os.path.join(config.workdir, RESULTS_FILE)
    if first_step < total_steps and os.path.exists(results_file):
        os.remove(results_file)
    return RunOutputs(config.workdir, first_step, log=_log)


def _transfer(step):
    """A `data_loader` transfer: this process's rows of a minibatch → global arrays sharded like
    ``step``'s inputs and labels."""

    def transfer(item):
        global_step, epoch, index, inputs, labels = item
        return (global_step, epoch, index,
                jax.make_array_from_process_local_data(step.inputs_sharding, inputs),
                jax.make_array_from_process_local_data(step.labels_sharding, labels))

    return transfer


def _minibatch_key(seed: int, mesh):
    """Minibatch k's random key: a function of (seed, k) alone, so a resumed run draws exactly what an
    uninterrupted one does. Computed by a jitted function with a replicated output, which every
    process can make (a `device_put` onto the global mesh cannot, with several processes)."""
    run_key = jax.random.fold_in(jax.random.key(seed), 1)  # 0 went to the method's init_params
    return jax.jit(lambda global_step: jax.random.fold_in(run_key, global_step),
                   out_shardings=NamedSharding(mesh, P()))


def _log_run(config: ExperimentConfig, train_set, test_set, method, steps_per_epoch: int, num_devices: int) -> None:
    """The run's first lines: method, data, model and shape of the run; where its outputs go."""
    clipping = f", gradients clipped to norm {config.gradient_clip:g}" if config.gradient_clip else ""
    settings = ", ".join(f"{k}={v!r}" for k, v in method.settings)
    _log(f"{config.method}{f'({settings})' if settings else ''} on {config.dataset} ({len(train_set)} train / "
         f"{len(test_set)} test), model {config.model_name}, T={config.time_steps}, {config.epochs} epochs of "
         f"{steps_per_epoch} minibatches of {config.batch_size}, {num_devices} device(s){clipping}")
    if config.workdir:
        _log(f"outputs in {os.path.abspath(config.workdir)}: checkpoints every {config.checkpoint_every} "
             "minibatches, metrics.jsonl, tensorboard/, and at the end results.json and plots/")


def _results(config: ExperimentConfig, loop: training_loop.TrainingLoop, num_devices: int, num_classes: int,
             skipped: SkippedExamples) -> dict:
    """results.json of a trained run (before the energy figures `_finish` adds)."""
    totals, history = loop.totals(), loop.history
    trained = totals["trained_examples"]
    return {
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
        "examples_per_second": trained / max(totals["train_time_s"], 1e-9) if trained else None,
        "time_per_epoch_s": totals["train_time_s"] / len(history) if trained else None,
        "compile_time_s": totals["compile_time_s"],
        "peak_memory_bytes": loop.memory.get("peak_bytes"),
        "compiled_memory": loop.memory,
        # Start-up included, summed over attempts: each earlier attempt up to its last checkpoint.
        "wall_time_s": totals["wall_time_s"],
        "device_kind": jax.devices()[0].device_kind,
        "skipped_examples": skipped.all(),  # unreadable examples --skip_bad_examples replaced, over all attempts
        # Recomputed from the whole history, so a resumed or rerun run reports the same warnings.
        "warnings": list(learning_monitor.learning_warnings(history, loop.first_loss, num_classes).values()),
    }


def _finish(config: ExperimentConfig, loop: training_loop.TrainingLoop, setup: RunSetup, test_set, to_time_major,
            outputs, results: dict) -> None:
    """Add the energy figures to ``results`` (process 0) and write results.json and plots (with a
    workdir), from the trained params (evaluated with the trained running statistics, if any)."""
    eval_net = setup.eval_net
    model_state = parallel.model_state(setup.net, loop.opt_state)
    if model_state is not None:
        eval_net = eval_net.bind_model_state(jax.device_get(model_state))
    params = setup.method.network_params(loop.params)
    if jax.process_index() == 0:  # synaptic operations and energy per inference on the test set (safjax.energy)
        results.update(_energy_results(eval_net, params, test_set, to_time_major, config.eval_batch_size))
    if outputs:
        spikes = _example_spikes(eval_net, params, test_set, to_time_major)
        outputs.finish(results, history=loop.history, spikes=spikes, layer_names=_layer_names(eval_net),
                       title=run_outputs.run_title(results))


def _train_batches(config: ExperimentConfig, train_set, first_step: int, total_steps: int, workers: int,
                   transfer, saved: dict | None) -> data_loader.TrainBatches:
    """The run's minibatches from ``first_step`` on: from the checkpoint's iterator state ``saved``
    (`training_loop.data_state`) when it was saved with this many workers and processes, else started at
    ``first_step`` (the same minibatches: each is a function of (seed, step) alone)."""

    rows = input_pipeline.process_rows(config.batch_size, jax.process_index(), jax.process_count())

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
