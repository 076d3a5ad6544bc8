"""The embedded default data set: scikit-learn's 1,797 real 8×8 handwritten digits.

Fixed split: a seed-0 permutation, the first 1,437 examples train, the last 360 test (80/20).
Pixels are scaled from 0..16 to [0, 1]; images are [N, 8, 8, 1] float32, labels [N] int32.
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)
NUM_TRAIN = 1437
SPLITS = ("train", "test")


def load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 8, 8, 1] float32 in [0, 1], labels [N] int32) of the fixed ``split``."""
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}.")
    from sklearn import datasets  # imported lazily: only this data set needs scikit-learn

    digits = datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    chosen = order[:NUM_TRAIN] if split == "train" else order[NUM_TRAIN:]
    images = (digits.images[chosen] / 16.0).astype(np.float32)[..., None]
    return images, digits.target[chosen].astype(np.int32)


def load(split: str, *, data_dir: str | None = None, time_steps: int | None = None):
    """The `safjax.datasets.load` entry: digits as a `Dataset` (float32 in [0, 1], no augmentation)."""
    del data_dir, time_steps  # embedded and static
    from safjax.datasets.base import Dataset

    images, labels = load_digits(split)
    return Dataset("digits", images, labels, NUM_CLASSES)
