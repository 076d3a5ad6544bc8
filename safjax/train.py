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
            (0 <= self.num_devices <= jax.device_count(), "num_devices",
             f"0 (all) to {jax.device_count()}, the devices JAX sees"),
        ]
        for ok, name, valid in checks:
            if not ok:
                raise ValueError(f"--{name}={getattr(self, name)!r} is invalid: expected {valid}.")


def _log(message: str) -> None:
    print(message, flush=True)


def train_and_evaluate(config: ExperimentConfig) -> dict:
    """Train, evaluate on the test split after every epoch, return (and save) the results."""
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

    rng = np.random.default_rng(config.seed)
    steps_per_epoch = len(train_y) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"--batch_size={config.batch_size} exceeds the {len(train_y)} training examples.")
    history, start = [], time.time()
    _log(f"{config.method} on {config.dataset} ({len(train_y)} train / {len(test_y)} test), "
         f"T={time_steps}, {config.epochs} epochs of {steps_per_epoch} minibatches, "
         f"{num_devices} device(s)")
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(len(train_y))
        losses = []
        for i in range(steps_per_epoch):
            batch = order[i * config.batch_size:(i + 1) * config.batch_size]
            inputs = encoding.direct(jnp.asarray(train_x[batch]), time_steps)
            params, opt_state, metrics = step(params, opt_state, inputs, jnp.asarray(train_y[batch]))
            losses.append(metrics.loss)
        loss = float(np.mean(jax.device_get(losses)))
        if not math.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss in epoch {epoch}; lower --learning_rate.")
        accuracy = float(np.mean(np.asarray(predict(params, jnp.asarray(test_x))) == test_y))
        rates = [round(float(r), 3) for r in metrics.firing_rates]
        history.append({"epoch": epoch, "train_loss": loss, "test_accuracy": accuracy,
                        "firing_rates": rates, "elapsed_s": time.time() - start})
        _log(f"epoch {epoch:3d}/{config.epochs}  loss {loss:.4f}  test accuracy {accuracy:.4f}  "
             f"firing {rates}  {time.time() - start:6.1f} s")
    elapsed = time.time() - start
    results = {
        **dataclasses.asdict(config),
        "num_devices": num_devices,
        "epochs_completed": config.epochs,
        "test_accuracy": history[-1]["test_accuracy"],
        "train_loss_history": [h["train_loss"] for h in history],
        "examples_per_second": config.epochs * steps_per_epoch * config.batch_size / elapsed,
        "wall_time_s": elapsed,
    }
    if config.workdir:
        os.makedirs(config.workdir, exist_ok=True)
        with open(os.path.join(config.workdir, "metrics.jsonl"), "w") as f:
            f.writelines(json.dumps(h) + "\n" for h in history)
        with open(os.path.join(config.workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    _log(f"final test accuracy: {results['test_accuracy']:.4f} ({elapsed:.1f} s)")
    return results
