"""Recorded DVS data sets through tonic: N-MNIST, DVS128-Gesture, CIFAR10-DVS.

tonic (``pip install safjax[events]``, or ``pip install tonic==1.7.0``; CIFAR10-DVS also needs
``aedat``) is optional and imported only when a split has to be framed. ``data_dir`` is tonic's
``save_to`` (default ``$SAFJAX_DATA_DIR``, else ``~/data``): tonic keeps each set in
``data_dir/<tonic class name>/``. safjax never downloads: with the files absent the loaders raise
`FileNotFoundError` naming the folder searched, what tonic expects in it and how to get it.

| name | tonic class | sensor | classes | default T | framing | frame H×W |
|---|---|---|---|---|---|---|
| ``nmnist`` | ``NMNIST`` | 34×34 | 10 | 10 | ``"time"`` | 34×34 |
| ``dvs_gesture`` | ``DVSGesture`` | 128×128 | 11 | 20 | ``"count"`` | 128×128 |
| ``cifar10_dvs`` | ``CIFAR10DVS`` | 128×128 | 10 | 10 | ``"count"`` | 48×48 |

``"count"`` (equal numbers of events per frame) is the framing most SNN papers use for the two
128×128 sets (SpikingJelly's ``split_by="number"``); N-MNIST's three saccades suit equal time bins.
Every loader takes ``mode=`` and ``frame_shape=`` to change them (e.g. DVS128-Gesture at
``frame_shape=(32, 32)`` or ``(64, 64)``: full-size float32 frames take 2.6 MB per recording at
T = 20); see `events.to_frames`.

CIFAR10-DVS has no official split: `split_indices` ranks the recordings by file path and
`split_per_class` takes, per class, the first 90 % of a seed-0 permutation of that class's
recordings for ``train`` and the rest (100 per class) for ``test``.

Framed splits are cached (`events.cached`), so tonic and the raw files are needed only once per
split and framing. The conversion itself, `frames_from_source`, works on any object that has
``len()`` and yields ``(events, label)`` by index, as tonic's data sets do.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import os

import numpy as np

from safjax.datasets import events as events_lib

TONIC_VERSION = "1.7.0"  # the version these loaders were written against (the `events` extra)
DATA_ENV = "SAFJAX_DATA_DIR"
SPLITS = ("train", "test")
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class EventSet:
    """What safjax needs to know about one tonic data set."""

    name: str
    title: str
    tonic_class: str
    sensor_shape: tuple[int, int]  # (H, W)
    num_classes: int
    time_steps: int
    mode: str
    frame_shape: tuple[int, int]  # (H', W')
    folders: tuple[str, str]  # extracted folder of (train, test), relative to data_dir/tonic_class
    extension: str
    expects: str  # tonic's layout, for error messages
    official_split: bool = True


NMNIST = EventSet(
    "nmnist", "N-MNIST", "NMNIST", (34, 34), 10, 10, "time", (34, 34), ("Train", "Test"), ".bin",
    "train.zip and test.zip with their extracted folders Train/ and Test/ (one sub-folder per "
    "digit of .bin recordings; tonic wants at least 10,000 .bin files in each)")
DVS_GESTURE = EventSet(
    "dvs_gesture", "DVS128-Gesture", "DVSGesture", (128, 128), 11, 20, "count", (128, 128),
    ("ibmGestureTrain", "ibmGestureTest"), ".npy",
    "ibmGestureTrain.tar.gz and ibmGestureTest.tar.gz (tonic's preprocessed copy, one .npy per "
    "gesture) with their extracted folders ibmGestureTrain/ and ibmGestureTest/ "
    "(user<NN>_<lighting>/<label>.npy)")
CIFAR10_DVS = EventSet(
    "cifar10_dvs", "CIFAR10-DVS", "CIFAR10DVS", (128, 128), 10, 10, "count", (48, 48), ("", ""),
    ".aedat4",
    "CIFAR10DVS.zip, the per-class archives airplane.zip ... truck.zip extracted from it, and "
    "their extracted folders airplane/ ... truck/ of .aedat4 recordings (tonic wants at least "
    "1,000; the full set has 10,000, both splits are taken from them)",
    official_split=False)


def _how_to_get(spec: EventSet, data_dir: str) -> str:
    if spec is CIFAR10_DVS:
        return (f"tonic {TONIC_VERSION} downloads its .aedat4 conversion of the recordings itself on a "
                f"machine with internet access: python -c \"import tonic; "
                f"tonic.datasets.CIFAR10DVS(save_to='{data_dir}')\". Without that, download the "
                f"archive by hand (its address is tonic.datasets.CIFAR10DVS.url, a figshare "
                f"mirror; the original release by the data set's authors, Li et al. 2017, is in an "
                f"older AEDAT format tonic does not read), put it in {data_dir}/CIFAR10DVS/ and "
                f"extract it and the ten per-class archives inside it. Reading .aedat4 needs "
                f"`pip install aedat`.")
    return (f"tonic downloads and extracts it itself on a machine with internet access: "
            f"python -c \"import tonic; tonic.datasets.{spec.tonic_class}(save_to='{data_dir}', "
            f"train=True); tonic.datasets.{spec.tonic_class}(save_to='{data_dir}', train=False)\"; "
            f"on an offline machine copy the resulting {spec.tonic_class}/ folder into {data_dir}.")


def _missing(spec: EventSet, data_dir: str, split: str) -> FileNotFoundError:
    location = os.path.join(data_dir, spec.tonic_class)
    return FileNotFoundError(
        f"{spec.title} ({split} split) not found: searched {location} (data_dir={data_dir}). "
        f"tonic expects there {spec.expects}. To get it: {_how_to_get(spec, data_dir)} "
        f"safjax never downloads data; pass data_dir= or set ${DATA_ENV} to where the data is.")


def default_data_dir() -> str:
    """``$SAFJAX_DATA_DIR`` if set, else ``~/data``."""
    return os.environ.get(DATA_ENV) or os.path.join(os.path.expanduser("~"), "data")


def _import_tonic(spec: EventSet):
    try:
        return importlib.import_module("tonic")
    except ImportError as error:
        raise ImportError(
            f"{spec.title} is read with tonic, an optional dependency: pip install "
            f"tonic=={TONIC_VERSION} (or pip install safjax[events]). ({error})") from error


def open_tonic(spec: EventSet, data_dir: str, split: str):
    """tonic's data set for ``split`` (CIFAR10-DVS: all recordings), never downloading.

    Files are checked before tonic sees them; tonic's own, stricter check then calls
    ``download()``, which a same-named subclass turns into the same `FileNotFoundError`.
    """
    tonic = _import_tonic(spec)
    folder = os.path.join(data_dir, spec.tonic_class, spec.folders[SPLITS.index(split)])
    if not next(glob.iglob(os.path.join(glob.escape(folder), "**", "*" + spec.extension),
                           recursive=True), None):
        raise _missing(spec, data_dir, split)
    error = _missing(spec, data_dir, split)

    def refuse_download(self):
        raise error

    # tonic finds its files under save_to/<class name>, hence the subclass keeps the name.
    base = getattr(tonic.datasets, spec.tonic_class)
    offline = type(base.__name__, (base,), {"download": refuse_download, "__module__": __name__})
    if spec.official_split:
        return offline(save_to=data_dir, train=split == "train")
    return offline(save_to=data_dir)


def split_per_class(labels, train_fraction: float = 0.9, seed: int = 0) -> dict[str, np.ndarray]:
    """Sorted ``{"train": indices, "test": indices}``: per class (in increasing label order), the
    first ``round(train_fraction · n_class)`` of a ``default_rng(seed)`` permutation train."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = round(train_fraction * members.size)
        train.append(members[:cut])
        test.append(members[cut:])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


def split_indices(source, split: str, train_fraction: float = 0.9, seed: int = 0) -> np.ndarray:
    """Indices into ``source`` of ``split`` by `split_per_class`, independent of listing order.

    tonic lists files in file-system order within a class folder, which differs between
    machines; recordings are therefore ranked by their path (``source.data``, tonic's file list)
    when it exists, and the result is in path order.
    """
    labels = _labels(source)
    paths = getattr(source, "data", None)
    rank = np.arange(len(labels)) if paths is None else np.argsort(np.asarray(paths, str), kind="stable")
    return rank[split_per_class(labels[rank], train_fraction, seed)[split]]


def _labels(source) -> np.ndarray:
    targets = getattr(source, "targets", None)  # tonic lists labels without reading events
    if targets is None:
        targets = [source[i][1] for i in range(len(source))]
    return np.asarray(targets, np.int64)


def frames_from_source(source, *, sensor_shape: tuple[int, int], num_frames: int,
                       mode: str = "time", frame_shape: tuple[int, int] | None = None,
                       indices=None) -> tuple[np.ndarray, np.ndarray]:
    """(frames ``[N, T, H', W', 2]`` float32, labels ``[N]`` int32) of a tonic-like data set.

    ``source[i]`` must give ``(events, label)`` with events a structured array with fields
    ``t, x, y, p``; ``indices`` (default: all) picks and orders the recordings. Framing as in
    `events.to_frames`, each recording over its own time span.
    """
    indices = np.arange(len(source)) if indices is None else np.asarray(indices)
    out_shape = tuple(frame_shape or sensor_shape)
    frames = np.zeros((indices.size, num_frames, *out_shape, 2), np.float32)
    labels = np.zeros(indices.size, np.int32)
    for row, index in enumerate(indices):
        events, label = source[int(index)]
        frames[row] = events_lib.to_frames(events, sensor_shape, num_frames, mode=mode,
                                           frame_shape=out_shape)
        labels[row] = int(label)
    return frames, labels


def _load(spec: EventSet, split: str, data_dir: str | None, time_steps: int | None,
          mode: str | None, frame_shape: tuple[int, int] | None):
    from safjax.datasets.base import Dataset

    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}.")
    data_dir = os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))
    time_steps = spec.time_steps if time_steps is None else int(time_steps)
    mode = mode or spec.mode
    frame_shape = tuple(int(s) for s in (frame_shape or spec.frame_shape))

    def build():
        source = open_tonic(spec, data_dir, split)
        indices = None if spec.official_split else split_indices(source, split)
        frames, labels = frames_from_source(source, sensor_shape=spec.sensor_shape,
                                            num_frames=time_steps, mode=mode,
                                            frame_shape=frame_shape, indices=indices)
        return {"frames": frames, "labels": labels}

    key = {"split": split, "time_steps": time_steps, "mode": mode, "frame_shape": frame_shape,
           "version": FORMAT_VERSION}
    arrays = events_lib.cached(spec.name, key, build)
    return Dataset(spec.name, arrays["frames"], arrays["labels"], spec.num_classes, temporal=True)


def load_nmnist(split: str, *, data_dir: str | None = None, time_steps: int | None = None,
                mode: str | None = None, frame_shape: tuple[int, int] | None = None):
    """N-MNIST ``[N, T, 34, 34, 2]`` (T = 10, equal time bins by default)."""
    return _load(NMNIST, split, data_dir, time_steps, mode, frame_shape)


def load_dvs_gesture(split: str, *, data_dir: str | None = None, time_steps: int | None = None,
                     mode: str | None = None, frame_shape: tuple[int, int] | None = None):
    """DVS128-Gesture, 11 classes, ``[N, T, 128, 128, 2]`` (T = 20, equal event counts by default)."""
    return _load(DVS_GESTURE, split, data_dir, time_steps, mode, frame_shape)


def load_cifar10_dvs(split: str, *, data_dir: str | None = None, time_steps: int | None = None,
                     mode: str | None = None, frame_shape: tuple[int, int] | None = None):
    """CIFAR10-DVS ``[N, T, 48, 48, 2]`` (T = 10, equal event counts, 90/10 split per class)."""
    return _load(CIFAR10_DVS, split, data_dir, time_steps, mode, frame_shape)
