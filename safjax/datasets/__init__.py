"""Data sets by name. ``digits`` (and ``digits_events``) are embedded and work offline.

``load(name, split, data_dir=..., time_steps=..., image_size=...)`` returns a `Dataset`. Loaders
are imported lazily so that optional dependencies (tensorflow-datasets, tonic) are only needed by
the data sets that use them.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

from safjax.datasets.base import Dataset, subset
from safjax.datasets.digits import load_digits

# name → "module:function" (imported on first use) or the function itself; every function is
# load(split, *, data_dir, time_steps) -> Dataset (plus ``image_size`` for those that take it: the
# ImageNet recipe). A new data set is one line here (docs/extending.md).
LOADERS = {
    "digits": "safjax.datasets.digits:load",
    "cifar10": "safjax.datasets.tfds_images:load_cifar10",
    "cifar100": "safjax.datasets.tfds_images:load_cifar100",
    "digits_events": "safjax.datasets.digits_events:load",
    "nmnist": "safjax.datasets.neuromorphic:load_nmnist",
    "dvs_gesture": "safjax.datasets.neuromorphic:load_dvs_gesture",
    "cifar10_dvs": "safjax.datasets.neuromorphic:load_cifar10_dvs",
    "imagenet2012": "safjax.datasets.tfds_stream:load_imagenet2012",
}
IMAGE_FOLDER_PREFIX = "image_folder:"


def is_known(name: str) -> bool:
    """True for a registered name or ``image_folder:<root>``."""
    return name in LOADERS or (name.startswith(IMAGE_FOLDER_PREFIX) and len(name) > len(IMAGE_FOLDER_PREFIX))


def load(name: str, split: str, *, data_dir: str | None = None, time_steps: int | None = None,
         image_size: int = 0, skip_bad_examples: bool = False) -> Dataset:
    """Load ``split`` ("train" or "test") of data set ``name``.

    ``time_steps`` is used by event data sets (frames per example); static image sets ignore it.
    ``image_size`` S > 0 asks for the ImageNet recipe (S×S views of images of any size,
    `safjax.image_recipes`); image folders and the loaders with an ``image_size`` argument
    (imagenet2012) take it; the others refuse it. ``skip_bad_examples``: an image folder's
    statistics pass leaves unreadable files out, and the data set's ``skip_bad`` is set (batches
    put the next example in the place of an unreadable one, `safjax.input_pipeline.make_batch`).
    """
    dataset = _load(name, split, data_dir, time_steps, image_size, skip_bad_examples)
    return dataclasses.replace(dataset, skip_bad=True) if skip_bad_examples else dataset


def _load(name, split, data_dir, time_steps, image_size, skip_bad_examples) -> Dataset:
    if name.startswith(IMAGE_FOLDER_PREFIX):
        from safjax.datasets import image_folder

        return image_folder.load(name[len(IMAGE_FOLDER_PREFIX):], split, image_size=image_size,
                                 skip_bad_examples=skip_bad_examples)
    if name not in LOADERS:
        raise ValueError(f"unknown data set {name!r}: expected one of {', '.join(LOADERS)} "
                         f"or '{IMAGE_FOLDER_PREFIX}<root>'.")
    loader = LOADERS[name]
    if isinstance(loader, str):
        module_name, function_name = loader.split(":")
        loader = getattr(importlib.import_module(module_name), function_name)
    if "image_size" in inspect.signature(loader).parameters:
        return loader(split, data_dir=data_dir, time_steps=time_steps, image_size=image_size)
    if image_size:
        raise ValueError(f"--image_size={image_size} is invalid for --dataset={name}: its images have one size; "
                         "--image_size applies to image_folder:<root> and imagenet2012 (0 = stored size).")
    return loader(split, data_dir=data_dir, time_steps=time_steps)


__all__ = ["Dataset", "IMAGE_FOLDER_PREFIX", "LOADERS", "is_known", "load", "load_digits", "subset"]
