"""`ExperimentConfig`: one training run as plain data (it imports nothing heavy; the registries
are read only when a run is validated).

Every field is a flag of `experiments.train` (generated from the field's type, default and
``help`` metadata; ``{methods}``, ``{datasets}``, ``{models}`` and ``{neurons}`` in a help text are
filled with the registered names), and so is every setting of every method factory
(`safjax.methods.all_settings`): those land in ``method_settings``, and only the chosen method's
settings may be given.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping

# The model a data set trains by default (``--model=""``).
DEFAULT_MODELS = {
    "digits": "digits_mlp",
    "digits_events": "event_conv",
    "cifar10": "vgg11_sws",
    "cifar100": "vgg_f",
    "cifar10_dvs": "vgg11_sws",
    "dvs_gesture": "vgg11_sws",
    "nmnist": "digits_mlp",
    "imagenet2012": "resnet34",
}
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")


def _field(default, help_text: str):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One training run."""

    method: str = _field("saf_e", "Training method: {methods}. Its settings are flags of their own (below).")
    dataset: str = _field("digits", "Data set: {datasets} or image_folder:<root> (a leading ~ in <root> is "
                          "your home folder; images are read from disk as batches need them, the train images' "
                          "size and pixel statistics once, cached in ~/.cache/safjax, or $SAFJAX_CACHE_DIR, "
                          "where event frames are cached too).")
    model: str = _field("", "Model: {models} ('' = the data set's default).")
    precision: str = _field("f32", "Synaptic operators in 'f32' or 'bf16' (bf16 operands, f32 accumulation; "
                            "parameters, optimizer state, neuron states and the loss stay f32; safjax/precision.py).")
    dropout: float = _field(0.0, "Neuron dropout rate p after every spiking layer: one mask per minibatch, held "
                            "over the T steps, identity at evaluation (docs/methods.md §1.7); 0 = none.")
    width: float = _field(1.0, "Channel-width multiplier of the model (e.g. 0.125: VGG-11 with 8…64 channels, CPU-sized).")
    data_dir: str = _field("", "Where tensorflow-datasets / event data live ('' = the library default; "
                           "a leading ~ is your home folder).")
    time_steps: int = _field(4, "Time steps T per example (event data: frames per example).")
    epochs: int = _field(10, "Training epochs. A rerun into the same --workdir may change it only with "
                         "--schedule=constant (extending a run; the cosine schedule depends on it).")
    batch_size: int = _field(32, "Global minibatch size (split over devices and hosts).")
    optimizer: str = _field("adam", "'adam' or 'sgd' (with --momentum).")
    learning_rate: float = _field(1e-3, "Peak learning rate.")
    momentum: float = _field(0.9, "SGD momentum.")
    grad_clip: float = _field(-1.0, "Rescale each gradient to global norm ≤ this before the optimizer: 0 = off, "
                              "-1 = the method's default (0.3 for saf_f and spike_rep, whose gradients "
                              "explode in deep nets, see docs/results.md; off for the others).")
    schedule: str = _field("constant", "Learning-rate schedule: 'constant' or 'cosine' (to 0 over the epochs, stepped once per epoch).")
    train_examples: int = _field(0, "Train on a fixed random subset of this many examples (0 = all): quick checks on CPU.")
    test_examples: int = _field(0, "Evaluate on a fixed random subset of this many test examples (0 = all).")
    augment: bool = _field(True, "Training augmentation where it applies: random crop (pad 4), flip and cutout (CIFAR, image folders "
                          "at their stored size); random-resized crop and flip with --image_size (ImageNet).")
    image_size: int = _field(0, "0 = images at their stored size (every image one size; the CIFAR recipe: pad-crop, "
                             "flip, cutout); S > 0 = the ImageNet recipe for images of any size: a random-resized "
                             "crop to S×S and a flip for training, a resize to S/0.875 and the centre S×S crop for "
                             "evaluation (image folders and imagenet2012; imagenet2012 uses 224 when 0).")
    seed: int = _field(0, "Seed for initialisation, data order and augmentation.")
    neuron: str = _field("lif", "Neuron model: {neurons}.")
    leak: float = _field(0.5, "LIF leak λ in (0, 1].")
    reset: str = _field("soft", "Neuron reset: 'soft' (subtract V_th: what SAF and SR need) or 'hard' (to 0: "
                        "exports to NIR exactly; BPTT, TBPTT and SLTT train it).")
    threshold: float = _field(1.0, "Firing threshold V_th > 0.")
    mse_weight: float = _field(0.0, "γ of the loss (1 − γ)·CE + γ·MSE (0.05 in the CIFAR presets).")
    unroll: int = _field(1, "lax.scan unroll factor of the time loop (0 = fully unrolled).")
    num_devices: int = _field(0, "Local devices for data parallelism (0 = all).")
    workdir: str = _field("", "Checkpoints, metrics, TensorBoard events, plots and results go here ('' = "
                          "nothing is saved; a leading ~ is your home folder). A rerun resumes the run stored "
                          "there and refuses settings that change its results (except log/checkpoint cadence, "
                          "eval batch size, data_dir, data workers, and with a note devices and unroll); --restart starts over.")
    checkpoint_every: int = _field(100, "Checkpoint every N minibatches (and at the end).")
    log_every: int = _field(50, "Log training metrics every N minibatches (and at every epoch's end).")
    eval_batch_size: int = _field(256, "Minibatch size of the test-set evaluation.")
    skip_bad_examples: bool = _field(False, "Skip an image file that cannot be read (empty, truncated, not an image, "
                                     "another size): the next example takes its place; each is logged once and listed "
                                     "in results.json. Without it such a file stops the run, naming it.")
    data_workers: int = _field(-1, "Processes that read, decode and augment minibatches (grain workers): -1 = "
                               "automatic (none for data held in memory, one per core but one, at most 8, for a "
                               "streamed image folder), 0 = threads of the training process. Results do not "
                               "depend on it.")
    method_settings: dict = dataclasses.field(default_factory=dict, metadata={
        "help": "The chosen method's own settings (its factory's arguments, e.g. {'truncation': 4} for tbptt); "
                "each is a flag of its own."})

    def __post_init__(self):
        # The one place paths are normalised: a flag value `--workdir=~/runs/x` reaches Python with
        # its `~` (no shell expands it after `=`), which would otherwise become a folder named `~`.
        from safjax.datasets import IMAGE_FOLDER_PREFIX  # a light import (loaders load lazily)

        for name in ("workdir", "data_dir"):
            object.__setattr__(self, name, os.path.expanduser(getattr(self, name)))
        if self.dataset.startswith(IMAGE_FOLDER_PREFIX):
            root = os.path.expanduser(self.dataset[len(IMAGE_FOLDER_PREFIX):])
            object.__setattr__(self, "dataset", IMAGE_FOLDER_PREFIX + root)

    @property
    def model_name(self) -> str:
        """``model``, or the data set's default model when ``model`` is empty."""
        if self.model:
            return self.model
        from safjax import datasets

        key = "image_folder" if self.dataset.startswith(datasets.IMAGE_FOLDER_PREFIX) else self.dataset
        return DEFAULT_MODELS.get(key, "vgg11_sws")

    @property
    def gradient_clip(self) -> float:
        """``grad_clip``, with -1 resolved to the method's default (0 = no clipping)."""
        return self.build_method().grad_clip if self.grad_clip == -1 else self.grad_clip

    def build_method(self):
        """The `safjax.methods.Method` of this run, built with ``method_settings``."""
        from safjax import methods

        return methods.get_method(self.method, **self.method_settings)

    def train_config(self):
        """The `TrainConfig` every method shares, for this run."""
        from safjax.train_config import TrainConfig

        return TrainConfig(mse_weight=self.mse_weight, unroll=True if self.unroll == 0 else self.unroll)

    def as_flags(self) -> dict[str, Any]:
        """Every field and every setting of the method (defaults included) as one flat
        ``{flag: value}`` dict: what a workdir's config.json and results.json hold."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "method_settings"}
        return {**values, **dict(self.build_method().settings)}

    def validate(self) -> None:
        """Raise ValueError naming the first bad field and its valid values."""
        import jax

        from safjax import datasets, methods, models, neurons, precision

        checks = [
            (self.method in methods.METHODS, "method", f"one of {', '.join(methods.METHODS)}"),
            (datasets.is_known(self.dataset), "dataset",
             f"one of {', '.join(datasets.LOADERS)} or image_folder:<root>"),
            (self.model_name in models.MODELS, "model", f"one of {', '.join(models.MODELS)}"),
            (math.isfinite(self.width) and self.width > 0, "width", "a channel-width multiplier > 0 (1 = the paper's widths)"),
            (0.0 <= self.dropout < 1.0, "dropout", "a rate in [0, 1) (0 = no dropout)"),
            (self.precision in precision.PRECISIONS, "precision", " or ".join(map(repr, precision.PRECISIONS))),
            (self.time_steps >= 1, "time_steps", "an integer ≥ 1"),
            (self.epochs >= 1, "epochs", "an integer ≥ 1"),
            (self.batch_size >= 1, "batch_size", "an integer ≥ 1"),
            (self.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}"),
            (math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate", "a number > 0"),
            (0.0 <= self.momentum < 1.0, "momentum", "a number in [0, 1)"),
            (self.grad_clip == -1 or (math.isfinite(self.grad_clip) and self.grad_clip >= 0), "grad_clip",
             "-1 (the method's default), 0 (off) or a global norm > 0"),
            (self.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}"),
            (self.neuron in neurons.NEURONS, "neuron", f"one of {', '.join(neurons.NEURONS)}"),
            (0.0 < self.leak <= 1.0, "leak", "a number in (0, 1]"),
            (self.reset in neurons.RESET_MODES, "reset", " or ".join(map(repr, neurons.RESET_MODES))),
            (math.isfinite(self.threshold) and self.threshold > 0, "threshold", "a number > 0"),
            (0.0 <= self.mse_weight <= 1.0, "mse_weight", "a number in [0, 1]"),
            (self.unroll >= 0, "unroll", "0 (fully unrolled) or a factor ≥ 1"),
            (self.checkpoint_every >= 1, "checkpoint_every", "an integer ≥ 1 (minibatches)"),
            (self.log_every >= 1, "log_every", "an integer ≥ 1 (minibatches)"),
            (self.image_size >= 0, "image_size", "0 (images at their stored size) or a side S ≥ 1 in pixels"),
            (self.train_examples >= 0, "train_examples", "0 (all) or a number of examples ≥ 1"),
            (self.test_examples >= 0, "test_examples", "0 (all) or a number of examples ≥ 1"),
            (self.eval_batch_size >= 1, "eval_batch_size", "an integer ≥ 1"),
            (self.data_workers >= -1, "data_workers", "-1 (automatic), 0 (no worker processes) or a number ≥ 1"),
            (0 <= self.num_devices <= jax.local_device_count(), "num_devices",
             f"0 (all) to {jax.local_device_count()}, the local devices JAX sees"),
        ]
        for ok, name, valid in checks:
            if not ok:
                raise ValueError(f"--{name}={getattr(self, name)!r} is invalid: expected {valid}.")
        steps = self.method_settings.get("backprop_steps", 0)  # SLTT-K's K: at most the T steps it draws from
        if isinstance(steps, int) and steps > self.time_steps:
            raise ValueError(f"--backprop_steps={steps} is invalid: expected 0 (every step) to "
                             f"--time_steps={self.time_steps}.")
        try:
            self.build_method()
        except (ValueError, TypeError) as error:
            raise ValueError(f"--method={self.method}: {error}") from None


def from_flags(values: Mapping[str, Any], explicit: frozenset[str] | set[str] = frozenset()) -> ExperimentConfig:
    """An `ExperimentConfig` from flat ``{flag: value}``: fields go to fields, method settings to
    ``method_settings``. A setting the chosen method does not take is refused when ``explicit``
    (given on the command line) and dropped otherwise (a preset's settings for another method)."""
    from safjax import methods

    fields = {f.name for f in dataclasses.fields(ExperimentConfig)} - {"method_settings"}
    config_values = {k: v for k, v in values.items() if k in fields}
    method = config_values.get("method", ExperimentConfig.method)
    known = methods.all_settings()
    unknown = sorted(set(values) - fields - set(known))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}: not a field of ExperimentConfig nor a setting "
                         f"of any method ({', '.join(sorted(known))}).")
    takes = methods.settings_of(method) if method in methods.METHODS else {}
    settings = {}
    for name in sorted(set(values) & set(known)):
        if name in takes:
            settings[name] = values[name]
        elif name in explicit:
            owners = ", ".join(known[name][1])
            raise ValueError(f"--{name} is a setting of {owners}, not of --method={method} "
                             f"(which takes {', '.join(takes) or 'none'}).")
    return ExperimentConfig(**config_values, method_settings=settings)
