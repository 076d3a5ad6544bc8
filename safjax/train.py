"""The trainer: data → model → any registered method, epoch by epoch, with progress.

`experiments/train.py` only parses flags and calls `train_and_evaluate(config)`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from safjax import config as config_lib
from safjax import datasets, encoding, inference, methods, models, parallel
from safjax.checkpoints import Checkpointer


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One training run. Every field has a flag of the same name in `experiments.train`."""

    method: str = "saf_e"
    dataset: str = "digits"
    model: str = "digits_mlp"
    time_steps: int = 4
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    neuron: str = "lif"
    leak: float = 0.5
    threshold: float = 1.0
    mse_weight: float = 0.0
    num_devices: int = 0
    workdir: str = ""
    checkpoint_every: int = 100

    def validate(self) -> None:
        """Raise ValueError naming the first bad field and its valid values."""
        checks = [
            (self.method in methods.METHODS, "method", f"one of {', '.join(methods.METHODS)}"),
            (self.dataset == "digits", "dataset", "'digits' (more data sets come with the data pipeline)"),
            (self.model in models.MODELS, "model", f"one of {', '.join(models.MODELS)}"),
            (self.time_steps >= 1, "time_steps", "an integer ≥ 1"),
            (self.epochs >= 1, "epochs", "an integer ≥ 1"),
            (self.batch_size >= 1, "batch_size", "an integer ≥ 1"),
            (math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate", "a number > 0"),
            (self.neuron in ("lif", "if"), "neuron", "'lif' or 'if'"),
            (0.0 < self.leak <= 1.0, "leak", "a number in (0, 1]"),
            (math.isfinite(self.threshold) and self.threshold > 0, "threshold", "a number > 0"),
            (0.0 <= self.mse_weight <= 1.0, "mse_weight", "a number in [0, 1]"),
            (self.checkpoint_every >= 1, "checkpoint_every", "an integer ≥ 1 (minibatches)"),
            (0 <= self.num_devices <= jax.device_count(), "num_devices",
             f"0 (all) to {jax.device_count()}, the devices JAX sees"),
        ]
        for ok, name, valid in checks:
            if not ok:
                raise ValueError(f"--{name}={getattr(self, name)!r} is invalid: expected {valid}.")


def _log(message: str) -> None:
    print(message, flush=True)


def _epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The data order of an epoch: a function of (seed, epoch) only, so a resumed run sees the
    same minibatches as an uninterrupted one."""
    return np.random.default_rng((seed, epoch)).permutation(num_examples)


def train_and_evaluate(config: ExperimentConfig) -> dict:
    """Train, evaluate on the test split after every epoch, return (and save) the results.

    With a ``workdir``, checkpoints are saved every ``checkpoint_every`` minibatches and at the
    end; rerunning the same command resumes from the newest readable one and ends with exactly
    the results of an uninterrupted run.
    """
    config.validate()
    mesh = parallel.make_mesh(config.num_devices or None)
    num_devices = mesh.devices.size
    if config.batch_size % num_devices:
        raise ValueError(f"--batch_size={config.batch_size} is invalid: expected a multiple of the "
                         f"{num_devices} devices (or set --num_devices).")
    train_x, train_y = datasets.load_digits("train")
    test_x, test_y = datasets.load_digits("test")
    model = models.MODELS[config.model](
        nnx.Rngs(config.seed), config.neuron, config.leak, config.threshold
    )
    net, params = model.network, model.params()
    optimizer = optax.adam(config.learning_rate)
    opt_state = optimizer.init(params)
    step = parallel.make_parallel_train_step(
        config.method, net, optimizer, mesh, config_lib.TrainConfig(mse_weight=config.mse_weight)
    )
    time_steps = config.time_steps

    @jax.jit
    def predict(params, images):
        outputs = inference.lif_outputs(net, params, encoding.direct(images, time_steps))
        return jnp.argmax(outputs.sum(0), -1)

    steps_per_epoch = len(train_y) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"--batch_size={config.batch_size} exceeds the {len(train_y)} training examples.")
    total_steps = config.epochs * steps_per_epoch
    checkpointer = Checkpointer(os.path.join(config.workdir, "checkpoints")) if config.workdir else None
    first_step, history, epoch_losses = 0, [], []
    if checkpointer:
        restored = checkpointer.restore_latest({"params": params, "opt_state": opt_state})
        if restored:
            first_step, state, meta = restored
            params, opt_state = state["params"], state["opt_state"]
            history, epoch_losses = meta["history"], meta["epoch_losses"]
            _log(f"resumed from {checkpointer.directory}/{first_step} (minibatch {first_step} of {total_steps})")
    params, opt_state = parallel.replicate((params, opt_state), mesh)
    start = time.time()
    _log(f"{config.method} on {config.dataset} ({len(train_y)} train / {len(test_y)} test), "
         f"T={time_steps}, {config.epochs} epochs of {steps_per_epoch} minibatches, "
         f"{num_devices} device(s)")
    order = None
    for global_step in range(first_step, total_steps):
        epoch, index = divmod(global_step, steps_per_epoch)
        if order is None or index == 0:
            order = _epoch_order(config.seed, epoch, len(train_y))
        batch = order[index * config.batch_size:(index + 1) * config.batch_size]
        inputs = encoding.direct(jnp.asarray(train_x[batch]), time_steps)
        params, opt_state, metrics = step(params, opt_state, inputs, jnp.asarray(train_y[batch]))
        loss = float(metrics.loss)
        if not math.isfinite(loss):
            kept = f"; the last good checkpoint is in {checkpointer.directory}" if checkpointer else ""
            raise FloatingPointError(
                f"non-finite training loss ({loss}) at minibatch {global_step + 1} (epoch {epoch + 1})"
                f"{kept}; lower --learning_rate."
            )
        epoch_losses.append(loss)
        if index == steps_per_epoch - 1:
            accuracy = float(np.mean(np.asarray(predict(params, jnp.asarray(test_x))) == test_y))
            rates = [round(float(r), 3) for r in metrics.firing_rates]
            history.append({"epoch": epoch + 1, "train_loss": float(np.mean(epoch_losses)),
                            "test_accuracy": accuracy, "firing_rates": rates})
            epoch_losses = []
            _log(f"epoch {epoch + 1:3d}/{config.epochs}  loss {history[-1]['train_loss']:.4f}  "
                 f"test accuracy {accuracy:.4f}  firing {rates}  {time.time() - start:6.1f} s")
        done = global_step + 1
        if checkpointer and (done % config.checkpoint_every == 0 or done == total_steps):
            checkpointer.save(done, {"params": params, "opt_state": opt_state},
                              {"history": history, "epoch_losses": epoch_losses})
    elapsed = time.time() - start
    if checkpointer:
        checkpointer.close()
    results = {
        **dataclasses.asdict(config),
        "num_devices": num_devices,
        "epochs_completed": len(history),
        "test_accuracy": history[-1]["test_accuracy"],
        "train_loss_history": [h["train_loss"] for h in history],
        "examples_per_second": (total_steps - first_step) * config.batch_size / max(elapsed, 1e-9),
        "wall_time_s": elapsed,
    }
    if config.workdir:
        with open(os.path.join(config.workdir, "metrics.jsonl"), "w") as f:
            f.writelines(json.dumps(h) + "\n" for h in history)
        with open(os.path.join(config.workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    _log(f"final test accuracy: {results['test_accuracy']:.4f} ({elapsed:.1f} s)")
    return results
