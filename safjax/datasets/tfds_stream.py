"""ImageNet-2012 streamed from prepared tensorflow-datasets (TFDS) ArrayRecord files, read without
TensorFlow, each JPEG decoded with Pillow when a batch needs it (`TfdsImages`).

``tfds.data_source`` gives random access to ArrayRecord files; with the image feature's decoding
skipped it returns each record's JPEG bytes and label. The data set is the ImageNet recipe
(`safjax.image_recipes`, ``Dataset.image_size``): images of any size, cut to S×S views per batch.
Splits: ``train`` is TFDS's train (1,281,167 images), ``test`` its validation (50,000).

Preparing the data needs TensorFlow and the two ImageNet archives (from https://image-net.org,
after registering) but no internet; safjax never attempts it:

    pip install tensorflow tensorflow-datasets
    tfds build imagenet2012 --manual_dir=MANUAL --data_dir=DIR --file_format=array_record

with ``ILSVRC2012_img_train.tar`` and ``ILSVRC2012_img_val.tar`` in MANUAL; then pass
``--data_dir=DIR``.

The labels are read once per split at load: ArrayRecord stores whole records, so this reads every
record, JPEG bytes included (about 140 GB for the train split: minutes even from a fast disk; not
measured here), with the images left undecoded. They are cached as a small
``.npy`` in ``$SAFJAX_CACHE_DIR/tfds_labels`` (default ``~/.cache/safjax/tfds_labels``), keyed by
the data folder and the names, sizes and modification times of the split's files, so later runs
and resumes read the labels in a moment.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import tempfile
import threading
import time
import warnings

import numpy as np

from safjax.datasets.bad_example import BadExample

from safjax.datasets import cache_files, tfds_images
from safjax.datasets.base import Dataset
from safjax.datasets.image_files import one_position
from safjax.datasets.image_folder import CACHE_ENV, IMAGENET_MEAN, IMAGENET_STD

IMAGENET_SPLITS = {"train": "train", "test": "validation"}  # safjax split -> TFDS split
DEFAULT_IMAGE_SIZE = 224
_LABEL_CHUNK = 1024  # records per batched read of the labels


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError("imagenet2012 needs tensorflow-datasets: `pip install tensorflow-datasets` "
                          "(TensorFlow itself is not needed to read prepared data).") from error
    return tfds


def _build_command(name: str, data_dir: str | None) -> str:
    return f"tfds build {name} --manual_dir=MANUAL --data_dir={data_dir or 'DIR'} --file_format=array_record"


def _absent_message(name: str, split: str, data_dir: str | None, tfds) -> str | None:
    """Where TFDS looked for ``name`` and how to prepare it, as one line; None when its ArrayRecord
    files and ``split`` are there (so a failure to open it is some other problem)."""
    problem = tfds_images.preparation_problem(name, data_dir, tfds, split)
    if problem is None:
        return None
    return (f"{problem} safjax never downloads data while loading. To prepare it, put ILSVRC2012_img_train.tar "
            f"and ILSVRC2012_img_val.tar (https://image-net.org) in a folder MANUAL and run "
            f"`{_build_command(name, data_dir)}` (it needs TensorFlow, not internet), then "
            f"{f'rerun with --data_dir={data_dir}' if data_dir else 'pass --data_dir=DIR'}. "
            "Or pass a class-per-folder copy of the images: --dataset=image_folder:<root> --image_size=224.")


def _unreadable(name: str, data_dir: str | None, error: Exception) -> ValueError:
    """One line for prepared data that TFDS cannot read: the folder, the first line of the reason,
    and how to rebuild it."""
    reason = (str(error).strip().splitlines() or [""])[0][:160]
    root = os.path.expanduser(data_dir) if data_dir else "~/tensorflow_datasets (or $TFDS_DATA_DIR)"
    return ValueError(f"{name} in {os.path.join(root, name)} is unreadable ({type(error).__name__}: {reason}): "
                      f"delete that folder and rebuild it with `{_build_command(name, data_dir)}` (or pass "
                      "--data_dir= of an intact copy).")


def open_source(name: str, split: str, data_dir: str | None):
    """``tfds.data_source`` of ``split`` (a TFDS split name) with the images left as encoded bytes,
    never downloading; absent or unreadable data raises one line saying how to prepare it."""
    tfds = _import_tfds()
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                                decoders={"image": tfds.decode.SkipDecoding()})
    except ImportError:
        raise
    except Exception as error:  # noqa: BLE001 - TFDS reports absent data obliquely (KeyError, ValueError, …)
        try:
            message = _absent_message(name, split, data_dir, tfds)
        except Exception:  # noqa: BLE001 - its dataset_info.json is damaged too
            message = None
        if message is None:
            raise _unreadable(name, data_dir, error) from None
        raise FileNotFoundError(message) from None


def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes as ``[H, W, 3]`` uint8 RGB (grayscale replicated, CMYK converted)."""
    from PIL import Image  # imported lazily, like the image folders' reader

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


class TfdsImages:
    """The images of a TFDS split as a lazy ``(N, S, S, 3)`` uint8 array-like for the ImageNet
    recipe (``Dataset.image_size`` = S): ``read(i)`` decodes example i at its own size,
    ``[H_i, W_i, 3]``; indexing is refused; ``take(indices)`` is the lazy subset.

    The data source is opened on first use in each process and not pickled: an instance pickles to
    its name, split, data folder and (for a subset) record positions, so data-loader workers
    receive it cheaply and open their own.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, name: str, split: str, data_dir: str | None, num_examples: int, image_size: int,
                 positions: np.ndarray | None = None, description: str | None = None):
        self.dataset, self.split, self.data_dir = name, split, data_dir
        self.positions = None if positions is None else np.asarray(positions, np.int64)
        count = num_examples if self.positions is None else len(self.positions)
        self.shape = (int(count), int(image_size), int(image_size), 3)
        self.image_size = int(image_size)
        self.name = description or f"the {split} split of {name}"
        self._source, self._lock = None, threading.Lock()

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key not in ("_source", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._source, self._lock = None, threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"TfdsImages({self.name}, shape={self.shape}, images of varying sizes)"

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"{self!r} decodes its images one at a time: use read(i), not np.asarray.")

    def __getitem__(self, index):
        raise TypeError(f"{self!r} holds images of varying sizes: read one with read(i); "
                        f"input_pipeline.make_batch makes them {self.image_size}×{self.image_size} with the "
                        "ImageNet recipe (safjax.image_recipes).")

    def source(self):
        """This process's data source (opened on first use)."""
        if self._source is None:
            with self._lock:
                if self._source is None:
                    self._source = open_source(self.dataset, self.split, self.data_dir)
        return self._source

    def read(self, index: int) -> np.ndarray:
        """Example ``index`` as ``[H_i, W_i, 3]`` uint8 RGB; an undecodable record is refused in
        one line naming the example."""
        position = one_position(index, len(self), self.name)
        record = position if self.positions is None else int(self.positions[position])
        data = self.source()[record]["image"]
        try:
            return decode_image(data)
        except MemoryError:
            raise
        except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, …
            reason = (str(error).strip().splitlines() or [""])[0]
            raise BadExample(position, f"cannot read example {position} of {self.name} (record {record} of "
                                       f"{self.dataset} {self.split} in {self.data_dir or 'the default data_dir'}): "
                                       f"{type(error).__name__}: {reason}") from error

    def take(self, indices) -> TfdsImages:
        """The examples ``indices`` (1-D integer array) as a new lazy `TfdsImages`, in that order."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or not (indices.size == 0 or np.issubdtype(indices.dtype, np.integer)):
            raise TypeError(f"{self.name}: take a 1-D integer array, got {indices.dtype} of shape {indices.shape}.")
        base = np.arange(len(self)) if self.positions is None else self.positions
        name = self.name if self.name.startswith("a subset of ") else f"a subset of {self.name}"
        return TfdsImages(self.dataset, self.split, self.data_dir, 0, self.image_size, positions=base[indices],
                          description=name)


def _cache_path(source, name: str, split: str) -> str | None:
    """The label cache file of ``split``: keyed by its data folder and the names, sizes and
    modification times of its files; None when they cannot be listed."""
    try:
        folder = os.path.realpath(str(source.dataset_info.data_dir))
        files = sorted(glob.glob(os.path.join(glob.escape(folder), f"{name}-{split}.*")))
        stats = [(os.path.basename(path), os.stat(path).st_size, os.stat(path).st_mtime_ns) for path in files]
    except (AttributeError, OSError, TypeError):
        return None
    if not stats:
        return None
    key = hashlib.sha256(repr((folder, split, stats)).encode()).hexdigest()[:16]
    base = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "safjax")
    return os.path.join(base, "tfds_labels", f"{name}-{split}-{key}.npy")


def _read_labels(source, name: str, split: str, cache: str | None = None) -> np.ndarray:
    """The labels ``[N]`` int32 of every record of ``source``, in record order (the images are not
    decoded, but every record is read); ``cache``: where they will be kept, for the message."""
    from safjax import progress

    count = len(source)
    labels = np.empty((count,), np.int32)
    kept = f"cached in {os.path.dirname(cache)}, ${CACHE_ENV} to move it" if cache else "not cached"
    print(f"reading the {count} labels of {name} {split} once (every record is read; {kept}) …", flush=True)
    began = time.time()
    meter = progress.Progress(count, f"reading {split} labels", "records", interval_s=10.0)
    try:
        for start in range(0, count, _LABEL_CHUNK):
            keys = list(range(start, min(start + _LABEL_CHUNK, count)))
            for offset, record in enumerate(source.__getitems__(keys)):
                labels[start + offset] = record["label"]
            meter.update(len(keys))
    finally:
        meter.close()
    print(f"read {count} {split} labels in {time.time() - began:.1f} s", flush=True)
    return labels


def labels_of(source, name: str, split: str) -> np.ndarray:
    """`_read_labels`, cached (see the module's docstring); an unwritable cache is one warning."""
    path = _cache_path(source, name, split)
    if path is not None:
        cache_files.remove_stale(os.path.dirname(path))
        try:
            cached = np.load(path)
            if cached.shape == (len(source),):
                return cached.astype(np.int32, copy=False)
        except (OSError, ValueError):
            pass  # no entry yet, or a damaged one: read again
    labels = _read_labels(source, name, split, path)
    if path is not None:
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, exist_ok=True)
            handle, tmp = tempfile.mkstemp(dir=directory, prefix=cache_files.temp_prefix(), suffix=".npy")
            try:
                with os.fdopen(handle, "wb") as f:
                    np.save(f, labels)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
            prefix = f"{name}-{split}-"
            for entry in os.listdir(directory):  # entries of older versions of these files
                if entry.startswith(prefix) and entry != os.path.basename(path):
                    os.unlink(os.path.join(directory, entry))
        except OSError as error:
            warnings.warn(f"could not write the label cache in {directory} ({error}); set {CACHE_ENV} to a "
                          "writable folder to skip reading the labels again next time.")
    return labels


def load_tfds_images(name: str, split: str, *, data_dir: str | None, image_size: int, mean, std) -> Dataset:
    """TFDS split ``split`` of image data set ``name`` (features ``image`` and ``label``) for the
    ImageNet recipe at ``image_size``: inputs a `TfdsImages`, labels read (or cached) here."""
    source = open_source(name, split, data_dir)
    try:
        num_classes = int(source.dataset_info.features["label"].num_classes)
        labels = labels_of(source, name, split)
    except ImportError:
        raise
    except Exception as error:  # noqa: BLE001 - e.g. RuntimeError of a truncated ArrayRecord file
        raise _unreadable(name, data_dir, error) from None
    if len(labels) and not (0 <= labels.min() and labels.max() < num_classes):
        raise ValueError(f"{name} {split}: labels outside 0..{num_classes - 1} (found {labels.min()}..{labels.max()}).")
    inputs = TfdsImages(name, split, data_dir, len(labels), image_size)
    inputs._source = source  # this process's, already open
    return Dataset(name, inputs, labels, num_classes, mean=mean, std=std, augment=True, image_size=image_size)


def load_imagenet2012(split: str, *, data_dir: str | None = None, time_steps: int | None = None,
                      image_size: int = 0) -> Dataset:
    """``split`` ("train": TFDS's train, 1,281,167 images; "test": its validation, 50,000) of
    ImageNet-2012 from TFDS ArrayRecord files in ``data_dir`` (default $TFDS_DATA_DIR or
    ~/tensorflow_datasets), 1000 classes, for the ImageNet recipe at ``image_size`` (0 = 224)
    with ImageNet's mean/std. ``time_steps`` is ignored."""
    del time_steps
    if split not in IMAGENET_SPLITS:
        raise ValueError(f"`split` must be one of {tuple(IMAGENET_SPLITS)}, got {split!r}.")
    if image_size < 0:
        raise ValueError(f"image_size must be ≥ 0 (0 = {DEFAULT_IMAGE_SIZE}), got {image_size}.")
    return load_tfds_images("imagenet2012", IMAGENET_SPLITS[split], data_dir=data_dir,
                            image_size=image_size or DEFAULT_IMAGE_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD)
