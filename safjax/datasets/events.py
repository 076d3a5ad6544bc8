"""Address-event data: the event record, framing into count tensors, and the frame cache.

**Events** are a numpy structured array with (at least) the fields ``t`` (timestamp in µs,
integer), ``x`` (column), ``y`` (row) and ``p`` (polarity: 0 = OFF, 1 = ON), the convention of
tonic; field order and integer widths may vary (tonic's N-MNIST, DVSGesture and CIFAR10DVS all
differ), `to_frames` reads fields by name. `EVENT_DTYPE` is the layout safjax itself produces.

**Shapes are (height, width)**, row-major like the frames ``[T, H, W, 2]`` they produce. Note that
tonic's ``sensor_size`` is ``(width, height, polarities)``: `to_frames` rejects a 3-tuple rather
than guess which one it was given.

**Frames** count events per (time bin, pixel, polarity): channel 0 = OFF, channel 1 = ON. With
``mode="time"`` the bins split a time span into ``num_frames`` equal intervals; with
``mode="count"`` they split the time-ordered events into ``num_frames`` groups of equal size
(±1 event), the framing SpikingJelly calls ``split_by="number"``. Spatial downsampling maps
``x → x · W' // W`` and ``y → y · H' // H`` (integer coordinate scaling: each target pixel sums
the events of ⌊W/W'⌋ or ⌈W/W'⌉ source columns), so no event is lost or split.

**Cache.** `cached` keeps framed tensors as ``.npz`` files under ``$SAFJAX_CACHE_DIR`` or, when
that is unset, ``~/.cache/safjax/``, one folder per data set, one file per split and framing.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping

import numpy as np

from safjax.datasets import cache_files

EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)])
MODES = ("time", "count")
CACHE_ENV = "SAFJAX_CACHE_DIR"


def make_events(t, x, y, p) -> np.ndarray:
    """A structured `EVENT_DTYPE` array ``[E]`` from four equally long sequences."""
    events = np.empty(len(t), EVENT_DTYPE)
    events["t"], events["x"], events["y"], events["p"] = t, x, y, p
    return events


def _shape2(name: str, shape) -> tuple[int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise ValueError(f"`{name}` must be (height, width), got {shape}; tonic's sensor_size "
                         f"(width, height, polarities) becomes (sensor_size[1], sensor_size[0]).")
    if min(shape) < 1:
        raise ValueError(f"`{name}` must be positive, got {shape}.")
    return shape


def to_frames(events: np.ndarray, sensor_shape: tuple[int, int], num_frames: int, *,
              mode: str = "time", frame_shape: tuple[int, int] | None = None,
              time_span: tuple[int, int] | None = None) -> np.ndarray:
    """Event counts ``[num_frames, H', W', 2]`` float32 (channel 0 OFF, 1 ON) of one recording.

    Args:
      events: structured array ``[E]`` with fields ``t``, ``x``, ``y``, ``p`` (``p > 0`` is ON).
      sensor_shape: (H, W) of the sensor; events with ``x ∉ [0, W)`` or ``y ∉ [0, H)`` are dropped.
      num_frames: T, the number of bins.
      mode: ``"time"``: bin ``⌊(t − t0) · T / (t1 − t0)⌋`` of the half-open span ``[t0, t1)``;
        ``"count"``: the i-th event (stable time order) of the E' kept events goes to
        bin ``⌊i · T / E'⌋``.
      frame_shape: (H', W') to downsample to by integer coordinate scaling; None keeps (H, W).
      time_span: ``(t0, t1)`` in µs for ``mode="time"``, events outside it dropped; None spans the
        recording, ``(t_min, t_max + 1)`` of all its events. With ``mode="count"`` it only selects
        the events that are then counted off.

    The sum of the frames is the number of events inside the sensor (and the span).
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    if num_frames < 1:
        raise ValueError(f"`num_frames` must be >= 1, got {num_frames}.")
    height, width = _shape2("sensor_shape", sensor_shape)
    out_height, out_width = _shape2("frame_shape", frame_shape or (height, width))
    frames = np.zeros((num_frames, out_height, out_width, 2), np.float32)
    if len(events) == 0:
        return frames
    # int64 throughout: tonic stores t as uint64 (CIFAR10DVS) and x, y as int16 or uint16.
    t = np.asarray(events["t"], np.int64)
    x = np.asarray(events["x"], np.int64)
    y = np.asarray(events["y"], np.int64)
    p = (np.asarray(events["p"]) > 0).astype(np.int64)
    if time_span is None:
        t0, t1 = int(t.min()), int(t.max()) + 1
    else:
        t0, t1 = (int(v) for v in time_span)
        if t1 <= t0:
            raise ValueError(f"`time_span` must have t1 > t0, got {time_span}.")
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height) & (t >= t0) & (t < t1)
    t, x, y, p = t[keep], x[keep], y[keep], p[keep]
    if t.size == 0:
        return frames
    if mode == "time":
        bins = (t - t0) * num_frames // (t1 - t0)
    else:
        rank = np.empty(t.size, np.int64)
        rank[np.argsort(t, kind="stable")] = np.arange(t.size)
        bins = rank * num_frames // t.size
    x = x * out_width // width
    y = y * out_height // height
    flat = ((bins * out_height + y) * out_width + x) * 2 + p
    counts = np.bincount(flat, minlength=frames.size)
    return counts.reshape(frames.shape).astype(np.float32)


def cache_dir() -> str:
    """``$SAFJAX_CACHE_DIR`` if set, else ``~/.cache/safjax``."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "safjax")


def _token(value) -> str:
    if isinstance(value, (tuple, list)):
        return "x".join(_token(v) for v in value)
    return re.sub(r"[^A-Za-z0-9.+-]", "_", str(value))


def cache_path(name: str, key: Mapping[str, object]) -> str:
    """Where `cached` keeps ``name`` under ``key``: the first items readable, a hash of them all."""
    readable = ""
    for k, v in key.items():
        item = f"{k}={_token(v)}"
        if len(readable) + len(item) > 120:
            break
        readable += item + "-"
    digest = hashlib.sha256(repr((name, sorted((k, repr(v)) for k, v in key.items()))).encode())
    return os.path.join(cache_dir(), _token(name), f"{readable}{digest.hexdigest()[:12]}.npz")


def cached(name: str, key: Mapping[str, object],
           build: Callable[[], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays ``build()`` returns, read from the cache when an earlier call stored them.

    ``key`` must name everything the arrays depend on (split, every framing parameter, seed,
    a format version), since it alone decides the file. The file is written to a temporary name
    in the same folder and renamed, so readers never see a partial file and concurrent builders
    merely overwrite each other with the same contents. An unreadable file is rebuilt, and the
    temporary files of killed writers are removed (`safjax.datasets.cache_files`).
    """
    path = cache_path(name, key)
    cache_files.remove_stale(os.path.dirname(path))
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {k: stored[k] for k in stored.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # damaged (e.g. a full disk at write time): rebuild below
    arrays = {k: np.asarray(v) for k, v in build().items()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(prefix=cache_files.temp_prefix(), suffix=".tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return arrays
