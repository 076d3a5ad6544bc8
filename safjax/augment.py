"""Batch image augmentations in NumPy: random crop, horizontal flip, cutout.

Every random function takes an explicit ``np.random.Generator`` and works on a batch
``images: [B, H, W, C]`` (uint8 in 0..255, or float), returning a new array of the same shape
and dtype. Each is split into a sampler (``sample_*``: the random parameters of the whole batch,
one row per example) and a deterministic ``*_at`` function that applies given parameters. The
split lets `safjax.input_pipeline` draw the parameters of a *global* minibatch and apply only this
process's rows, so every process count sees identical examples.

`standard` is the CIFAR recipe: pad-4 random crop → horizontal flip (p = 0.5) → cutout of a
16×16 square, each filled with 0 (black, in pixel space, before normalisation).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def _check_batch(images: np.ndarray) -> None:
    if images.ndim != 4:
        raise ValueError(f"`images` must be a batch [B, H, W, C], got shape {images.shape}.")


# ---------------------------------------------------------------- random crop with zero padding


def sample_crop_offsets(rng: np.random.Generator, batch_size: int, padding: int = 4) -> np.ndarray:
    """Crop offsets ``[B, 2]`` int64 (rows, columns), each uniform in 0..2·padding."""
    if padding < 0:
        raise ValueError(f"`padding` must be ≥ 0 pixels, got {padding}.")
    return rng.integers(0, 2 * padding + 1, size=(batch_size, 2))


def crop_at(images: np.ndarray, offsets: np.ndarray, padding: int = 4) -> np.ndarray:
    """Zero-pad ``images [B, H, W, C]`` by ``padding`` pixels per side, then cut the H×W window
    whose top-left corner is ``offsets [B, 2]`` (rows, columns) in the padded image.

    Offset (padding, padding) returns the image unchanged; offset (0, 0) moves its content
    ``padding`` pixels down and right.
    """
    _check_batch(images)
    batch, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    # Every H×W window of the padded images, as a view: [B, 2p+1, 2p+1, C, H, W].
    windows = np.lib.stride_tricks.sliding_window_view(padded, (height, width), axis=(1, 2))
    chosen = windows[np.arange(batch), offsets[:, 0], offsets[:, 1]]  # [B, C, H, W]
    return np.ascontiguousarray(chosen.transpose(0, 2, 3, 1))


def random_crop(images: np.ndarray, rng: np.random.Generator, padding: int = 4) -> np.ndarray:
    """Random H×W crop of ``images [B, H, W, C]`` zero-padded by ``padding``; one offset per example."""
    _check_batch(images)
    return crop_at(images, sample_crop_offsets(rng, images.shape[0], padding), padding)


# ---------------------------------------------------------------- horizontal flip


def sample_flips(rng: np.random.Generator, batch_size: int) -> np.ndarray:
    """Which examples to mirror: ``[B]`` bool, each True with probability 0.5."""
    return rng.random(batch_size) < 0.5


def flip_at(images: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """Mirror left↔right the examples of ``images [B, H, W, C]`` where ``flips [B]`` is True."""
    _check_batch(images)
    out = images.copy()
    out[flips] = images[flips, :, ::-1]
    return out


def horizontal_flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror each example of ``images [B, H, W, C]`` left↔right with probability 0.5."""
    _check_batch(images)
    return flip_at(images, sample_flips(rng, images.shape[0]))


# ---------------------------------------------------------------- cutout


def sample_cutout_centres(rng: np.random.Generator, batch_size: int, height: int, width: int) -> np.ndarray:
    """Square centres ``[B, 2]`` int64 (row, column), uniform over the H×W pixels."""
    return np.stack([rng.integers(0, height, batch_size), rng.integers(0, width, batch_size)], axis=1)


def cutout_at(images: np.ndarray, centres: np.ndarray, length: int = 16) -> np.ndarray:
    """Set to 0 a ``length``×``length`` square of each example, clipped at the image borders.

    The square of example b covers rows ``centres[b, 0] - length // 2`` up to (excluding)
    ``+ length``, and likewise for columns; ``images`` is ``[B, H, W, C]``, ``centres`` ``[B, 2]``.
    """
    _check_batch(images)
    if length < 0:
        raise ValueError(f"`length` must be ≥ 0 pixels, got {length}.")
    out = images.copy()
    # Slicing clips the far edges; the near edges may be negative and are clipped here.
    for b, (row, col) in enumerate(centres - length // 2):
        out[b, max(row, 0):max(row + length, 0), max(col, 0):max(col + length, 0)] = 0
    return out


def cutout(images: np.ndarray, rng: np.random.Generator, length: int = 16) -> np.ndarray:
    """Zero one ``length``×``length`` square per example of ``images [B, H, W, C]``, centred
    uniformly over the image and clipped at its borders (DeVries & Taylor, 2017)."""
    _check_batch(images)
    _, height, width, _ = images.shape
    return cutout_at(images, sample_cutout_centres(rng, images.shape[0], height, width), length)


# ---------------------------------------------------------------- the standard CIFAR recipe


class StandardParams(NamedTuple):
    """Random parameters of `standard` for a batch of B examples."""

    crop_offsets: np.ndarray  # [B, 2] int64 in 0..2·padding
    flips: np.ndarray  # [B] bool
    cutout_centres: np.ndarray  # [B, 2] int64, (row, column)

    def rows(self, rows: slice) -> StandardParams:
        """The parameters of the examples in ``rows`` only."""
        return StandardParams(*(p[rows] for p in self))


def sample_standard(rng: np.random.Generator, batch_size: int, image_size: tuple[int, int],
                    padding: int = 4) -> StandardParams:
    """Draw crop offsets, then flips, then cutout centres for ``batch_size`` images of
    ``image_size = (H, W)``: the same draws `random_crop` → `horizontal_flip` → `cutout` make."""
    height, width = image_size
    return StandardParams(sample_crop_offsets(rng, batch_size, padding), sample_flips(rng, batch_size),
                          sample_cutout_centres(rng, batch_size, height, width))


def standard_at(images: np.ndarray, params: StandardParams, padding: int = 4, length: int = 16) -> np.ndarray:
    """Apply crop → flip → cutout with given ``params`` to ``images [B, H, W, C]``."""
    images = crop_at(images, params.crop_offsets, padding)
    images = flip_at(images, params.flips)
    return cutout_at(images, params.cutout_centres, length)


def standard(images: np.ndarray, rng: np.random.Generator, padding: int = 4, length: int = 16) -> np.ndarray:
    """The CIFAR training augmentation of ``images [B, H, W, C]``: random crop with ``padding``
    zero pixels, horizontal flip with p = 0.5, cutout of a ``length``-pixel square.

    Equal to ``cutout(horizontal_flip(random_crop(images, rng, padding), rng), rng, length)``.
    """
    _check_batch(images)
    batch, height, width, _ = images.shape
    return standard_at(images, sample_standard(rng, batch, (height, width), padding), padding, length)
