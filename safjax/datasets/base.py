"""The one data set type every loader returns: labels in memory, inputs in memory or read lazily."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One split of a data set, batch-major.

    ``inputs`` is either static images ``[N, H, W, C]`` (uint8 in 0..255, or float32 already
    scaled) that the trainer repeats over T steps (direct encoding), or event frames
    ``[N, T, H, W, C]`` (float32, ``temporal=True``) that carry their own time axis.
    ``mean``/``std`` (per channel, on the [0, 1] scale) normalise after augmentation;
    ``augment`` says whether crop/flip/cutout make sense for this data.

    ``inputs`` is a NumPy array, or an array-like that reads its examples on demand (a streamed
    data set, e.g. `safjax.datasets.image_files.ImageFiles`): it has ``shape``, ``dtype`` and
    ``ndim``, ``inputs[indices]`` returns those examples as a NumPy array, and
    ``inputs.take(indices)`` returns the lazy subset (see `subset`).

    ``image_size=S`` (the ImageNet recipe, `safjax.image_recipes`): the images differ in size;
    ``inputs.read(i)`` returns example i as its own ``[H_i, W_i, C]`` uint8, ``inputs.shape`` is
    ``(N, S, S, C)``, the size of the views `safjax.input_pipeline.make_batch` cuts from them
    (random-resized crops for training, centre crops for evaluation).
    """

    name: str
    inputs: np.ndarray
    labels: np.ndarray  # [N] int32 in 0..num_classes-1
    num_classes: int
    temporal: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: bool = False
    skip_bad: bool = False  # an unreadable example is replaced by the next one (--skip_bad_examples)
    image_size: int | None = None

    def __post_init__(self):
        expected_rank = 5 if self.temporal else 4
        if self.inputs.ndim != expected_rank:
            layout = "[N, T, H, W, C]" if self.temporal else "[N, H, W, C]"
            raise ValueError(f"{self.name}: inputs must be {layout}, got shape {self.inputs.shape}.")
        if self.labels.shape != (self.inputs.shape[0],):
            raise ValueError(f"{self.name}: labels must be [N] = [{self.inputs.shape[0]}], "
                             f"got shape {self.labels.shape}.")
        if self.image_size is not None:
            size = self.image_size
            if self.temporal or not hasattr(self.inputs, "read") or tuple(self.inputs.shape[1:3]) != (size, size):
                raise ValueError(f"{self.name}: image_size={size} needs static images read one at a time "
                                 f"(inputs.read(i)) and inputs.shape (N, {size}, {size}, C), got "
                                 f"{type(self.inputs).__name__} of shape {self.inputs.shape}.")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image or frame."""
        return tuple(self.inputs.shape[-3:])

    @property
    def time_steps(self) -> int | None:
        """T of event frames, None for static images."""
        return int(self.inputs.shape[1]) if self.temporal else None


def subset(dataset: Dataset, indices: np.ndarray) -> Dataset:
    """The examples ``indices [n]`` of ``dataset``, in that order; a streamed data set stays
    streamed (its ``inputs.take``), an in-memory one is copied."""
    indices = np.asarray(indices)
    inputs = dataset.inputs[indices] if isinstance(dataset.inputs, np.ndarray) else dataset.inputs.take(indices)
    return dataclasses.replace(dataset, inputs=inputs, labels=dataset.labels[indices])
