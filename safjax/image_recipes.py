"""The ImageNet recipe on one image of any size (NumPy and Pillow, no JAX): random-resized crop and
flip for training, resize and centre crop for evaluation.

`train_view` is torchvision's ``RandomResizedCrop(size)`` then ``RandomHorizontalFlip()`` on a PIL
image, `eval_view` its ``Resize(round(size / 0.875))`` then ``CenterCrop(size)`` (224 → 256), both
with Pillow's bilinear resize (antialiased when shrinking, as torchvision's PIL path).

Every draw of one example comes from its own generator, ``np.random.default_rng((seed, epoch,
key))`` with ``key`` the example's index in the data set (`safjax.input_pipeline.make_batch`), so
an example's view does not depend on its position in the minibatch, the batch size, or the number
of processes or data workers.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

SCALE = (0.08, 1.0)  # area of the crop, as a fraction of the image's
RATIO = (3 / 4, 4 / 3)  # width / height of the crop
EVAL_CROP_FRACTION = 0.875  # the centre crop's side over the resized short side (224 / 256)
_TRIES = 10


class ResizedCrop(NamedTuple):
    """The crop box (rows ``top .. top + height - 1``, columns ``left .. left + width - 1``) and
    whether to mirror the resized crop left↔right."""

    top: int
    left: int
    height: int
    width: int
    flip: bool


def sample_resized_crop(rng: np.random.Generator, height: int, width: int,
                        scale: tuple[float, float] = SCALE, ratio: tuple[float, float] = RATIO) -> ResizedCrop:
    """torchvision's ``RandomResizedCrop.get_params`` for an image of ``height``×``width``, then a
    flip bit (p = 0.5).

    Up to 10 tries: the crop's area is a fraction uniform in ``scale`` of the image's, its aspect
    ratio (width / height) log-uniform in ``ratio``, its sides rounded to whole pixels; the first
    that fits is placed uniformly in the image. When none fits, the centre crop of the whole
    image, narrowed to the nearest ratio in ``ratio`` (a 10×1000 image gives its centre 10×13).
    """
    if height < 1 or width < 1:
        raise ValueError(f"an image to crop must be at least 1×1, got {height}×{width}.")
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    box = None
    for _ in range(_TRIES):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            box = (top, left, h, w)
            break
    if box is None:  # the centre-crop fallback
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = height, int(round(height * max(ratio)))
        else:
            h, w = height, width
        box = ((height - h) // 2, (width - w) // 2, h, w)
    return ResizedCrop(*box, flip=bool(rng.random() < 0.5))


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image [H, W, C]`` uint8 (C = 1 or 3) resized to ``height``×``width`` with Pillow's bilinear."""
    from PIL import Image  # imported lazily, like the image readers

    if image.ndim != 3 or image.shape[2] not in (1, 3) or image.dtype != np.uint8:
        raise ValueError(f"an image must be [H, W, 1 or 3] uint8, got {image.dtype} of shape {image.shape}.")
    pil = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    resized = np.asarray(pil.resize((width, height), Image.BILINEAR))
    return resized[..., None] if image.shape[2] == 1 else resized


def crop_view(image: np.ndarray, crop: ResizedCrop, size: int) -> np.ndarray:
    """The box of ``crop`` cut from ``image [H, W, C]`` uint8, resized to ``size``×``size``,
    mirrored when ``crop.flip``: ``[size, size, C]`` uint8."""
    patch = image[crop.top:crop.top + crop.height, crop.left:crop.left + crop.width]
    view = _resize(np.ascontiguousarray(patch), size, size)
    return np.ascontiguousarray(view[:, ::-1]) if crop.flip else view


def train_view(image: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """The training view of ``image [H, W, C]`` uint8: a `sample_resized_crop` draw from ``rng``,
    resized to ``size``×``size`` and flipped when drawn (`crop_view`)."""
    return crop_view(image, sample_resized_crop(rng, image.shape[0], image.shape[1]), size)


def eval_size(size: int) -> int:
    """The short side an evaluation image is resized to before its centre crop: round(size / 0.875)."""
    return int(round(size / EVAL_CROP_FRACTION))


def eval_view(image: np.ndarray, size: int) -> np.ndarray:
    """The evaluation view of ``image [H, W, C]`` uint8: its shorter side resized (bilinear) to
    `eval_size` (the longer one in proportion, rounded down as torchvision's ``Resize``), then the
    centre ``size``×``size`` crop (offsets rounded as torchvision's ``CenterCrop``)."""
    height, width = image.shape[:2]
    short = eval_size(size)
    if height <= width:
        new_height, new_width = short, int(short * width / height)
    else:
        new_height, new_width = int(short * height / width), short
    resized = _resize(image, new_height, new_width)
    top = int(round((new_height - size) / 2.0))
    left = int(round((new_width - size) / 2.0))
    return np.ascontiguousarray(resized[top:top + size, left:left + size])
