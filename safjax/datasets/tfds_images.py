"""CIFAR-10 and CIFAR-100 from prepared tensorflow-datasets (TFDS) files, read without TensorFlow.

`tfds.data_source` gives random access to data prepared in the ArrayRecord format; TFDS parses
the records with its own protobuf copy and decodes the PNGs with Pillow (or OpenCV), so
TensorFlow is not needed to *read*. Preparing the data (download + conversion) does need
TensorFlow and internet, so it is never attempted here: absent data raises `FileNotFoundError`
saying where TFDS looked and how to prepare it, e.g. on a machine with internet:

    pip install tensorflow tensorflow-datasets
    tfds build cifar10 --data_dir=DIR --file_format=array_record

then copy DIR and pass ``--data_dir=DIR``. Without internet, a class-per-folder copy of the
images loads through ``image_folder:<root>`` (`safjax.datasets.image_folder`).

Images are ``[N, 32, 32, 3]`` uint8, labels ``[N]`` int32 (CIFAR-100: the 100 fine labels).
"""

from __future__ import annotations

import os

import numpy as np

from safjax.datasets.base import Dataset

SPLITS = ("train", "test")
IMAGE_SHAPE = (32, 32, 3)
# Per-channel (R, G, B) mean and standard deviation of the training pixels, on the [0, 1] scale.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
_READ_CHUNK = 2048  # records per batched read


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError("CIFAR needs tensorflow-datasets: `pip install tensorflow-datasets` "
                          "(TensorFlow itself is not needed to read prepared data).") from error
    return tfds


def preparation_problem(name: str, data_dir: str | None, tfds, split: str | None = None) -> str | None:
    """Why TFDS's ``name`` (and its ``split``, if given) cannot be read in ``data_dir``, as one
    sentence naming where TFDS looked; None when its ArrayRecord files are there."""
    builder = tfds.builder(name, data_dir=data_dir)
    where = str(builder.data_dir)
    if not data_dir:
        where += " (the default data_dir: $TFDS_DATA_DIR or ~/tensorflow_datasets)"
    if not builder.is_prepared():
        return f"{name} is not prepared: tfds looked for it in {where} and found nothing."
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
        return (f"{name} is prepared in {where}, but as {builder.info.file_format.value} files, "
                "and random access needs ArrayRecord.")
    if split is not None and split not in builder.info.splits:
        return f"{name} in {where} has no {split!r} split (it has {', '.join(builder.info.splits) or 'none'})."
    return None


def _absent_message(name: str, data_dir: str | None, tfds) -> str | None:
    """Where TFDS looked for ``name`` and how to prepare it, as one message; None when ArrayRecord
    data is there (so a failure to open it is some other problem)."""
    problem = preparation_problem(name, data_dir, tfds)
    if problem is None:
        return None
    return (f"{problem} safjax never downloads data while loading. To prepare it, run "
            f"`tfds build {name} --data_dir=DIR --file_format=array_record` on a machine with internet "
            f"and TensorFlow, copy DIR here and pass --data_dir=DIR. Offline alternative: a "
            f"class-per-folder copy of the images via --dataset=image_folder:<root> "
            f"(<root>/train/<class>/*.png, <root>/test/<class>/*.png).")


def _unreadable(name: str, data_dir: str | None, error: Exception) -> ValueError:
    """One line for prepared data that TFDS cannot read (a truncated or overwritten file, a broken
    dataset_info.json): the folder, the first line of the reason, and how to rebuild it."""
    reason = (str(error).strip().splitlines() or [""])[0][:160]
    root = os.path.expanduser(data_dir) if data_dir else "~/tensorflow_datasets (or $TFDS_DATA_DIR)"
    return ValueError(
        f"{name} in {os.path.join(root, name)} is unreadable ({type(error).__name__}: {reason}): delete that "
        f"folder and rebuild it with `tfds build {name} --data_dir={data_dir or 'DIR'} --file_format=array_record` "
        "on a machine with internet and TensorFlow (or pass --data_dir= of an intact copy).")


def _read_all(source, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Every record of ``source`` as (images [N, 32, 32, 3] uint8, labels [N] int32)."""
    num_examples = len(source)
    images = np.empty((num_examples, *IMAGE_SHAPE), np.uint8)
    labels = np.empty((num_examples,), np.int32)
    batched = True
    for start in range(0, num_examples, _READ_CHUNK):
        keys = list(range(start, min(start + _READ_CHUNK, num_examples)))
        records = None
        if batched:
            try:
                records = source.__getitems__(keys)
            except TypeError:
                # tfds.testing.mock_data (4.9.x) installs `__getitems__` unbound, so batched reads of
                # a mocked source fail; single reads work, and a real error re-raises from them.
                batched = False
        if records is None:
            records = [source[key] for key in keys]
        for offset, record in enumerate(records):
            images[start + offset] = record["image"]
            labels[start + offset] = record["label"]
    if num_examples and not (0 <= labels.min() and labels.max() < num_classes):
        raise ValueError(f"labels outside 0..{num_classes - 1} (found {labels.min()}..{labels.max()}).")
    return images, labels


def _load(name: str, num_classes: int, mean, std, split: str, data_dir: str | None) -> Dataset:
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}.")
    tfds = _import_tfds()
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except (NotImplementedError, FileNotFoundError, KeyError, ValueError) as error:
        # TFDS reports absent data obliquely ("file format TFRECORD is not supported" with a
        # data_dir, "`splits` is empty" without one); when the data is indeed absent, say what is
        # missing and how to get it, otherwise it is there but unreadable.
        try:
            message = _absent_message(name, data_dir, tfds)
        except Exception:  # noqa: BLE001 - its dataset_info.json is damaged too
            message = None
        if message is None:
            raise _unreadable(name, data_dir, error) from None
        raise FileNotFoundError(message) from None
    except ImportError:
        raise
    except Exception as error:  # noqa: BLE001 - TFDS's and ArrayRecord's errors of damaged files vary
        raise _unreadable(name, data_dir, error) from None
    try:
        images, labels = _read_all(source, num_classes)
    except ImportError:
        raise
    except Exception as error:  # noqa: BLE001 - e.g. RuntimeError of a truncated ArrayRecord file
        raise _unreadable(name, data_dir, error) from None
    return Dataset(name, images, labels, num_classes, mean=mean, std=std, augment=True)


def load_cifar10(split: str, *, data_dir: str | None = None, time_steps: int | None = None) -> Dataset:
    """``split`` ("train": 50,000, "test": 10,000) of CIFAR-10 from TFDS ArrayRecord files in
    ``data_dir`` (default $TFDS_DATA_DIR or ~/tensorflow_datasets). ``time_steps`` is ignored:
    static images are repeated over time by the trainer."""
    del time_steps
    return _load("cifar10", 10, CIFAR10_MEAN, CIFAR10_STD, split, data_dir)


def load_cifar100(split: str, *, data_dir: str | None = None, time_steps: int | None = None) -> Dataset:
    """``split`` ("train": 50,000, "test": 10,000) of CIFAR-100 (fine labels, 100 classes); see
    `load_cifar10`."""
    del time_steps
    return _load("cifar100", 100, CIFAR100_MEAN, CIFAR100_STD, split, data_dir)
