"""Image files read on demand: a lazy ``[N, H, W, C]`` uint8 array-like (`ImageFiles`).

A streamed data set (`safjax.datasets.base.Dataset` with lazy ``inputs``) keeps only the paths of
its images and their shape; ``files[indices]`` decodes those files with Pillow (in a few threads
for a batch of large images: Pillow releases the GIL while decoding) and returns a NumPy array
in index order.
An `ImageFiles` pickles to its paths and shape, so it can be sent to data-loader worker processes.

With ``image_size=S`` the files may differ in size (the ImageNet recipe, `safjax.image_recipes`):
``files.read(i)`` returns example i at its own size, ``shape`` is ``(N, S, S, C)`` (the size of
the views `safjax.input_pipeline.make_batch` makes) and ``files[indices]`` is refused.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Sequence

import numpy as np

from safjax.datasets.bad_example import BadExample

GRAY_MODES = ("1", "L", "LA")  # Pillow modes read as one channel when every image is grayscale
_THREADS = min(4, os.cpu_count() or 1)
# Below this many pixels per image, opening the file and Python's share of the work outweigh
# the decoding that threads run in parallel (CIFAR's 32×32 JPEGs: 3,400 images/s in one thread,
# 1,900 in eight, on 2 CPU cores; 224×224: 1,500 in one, 2,100 in two).
THREADED_PIXELS = 128 * 128


class UnsupportedImage(ValueError):
    """A readable image of a pixel format this loader refuses (16-bit or float)."""


def _is_wide(mode: str) -> bool:
    return mode in ("I", "F") or mode.startswith("I;16")


def read_image(path: str, channels: int | None) -> np.ndarray:
    """The image at ``path`` as ``[H, W, channels]`` uint8; ``channels`` 3 converts to RGB
    (grayscale replicated, palette expanded, alpha dropped), 1 to grayscale ("L"), None keeps one
    channel for a grayscale image and 3 for anything else.

    Raises `UnsupportedImage` for 16-bit and float images, and Pillow's own exceptions for a file
    it cannot decode (the whole file is decoded here, so a truncated one raises too).
    """
    from PIL import Image  # imported lazily: only image folders need Pillow

    with Image.open(path) as image:
        image.load()
        if _is_wide(image.mode):
            raise UnsupportedImage(f"{path} is a {image.mode} (16-bit or float) image: only 8-bit "
                                   "images are supported; convert it to 8-bit first.")
        if channels == 1 or (channels is None and image.mode in GRAY_MODES):
            return np.asarray(image.convert("L"))[..., None]
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def read_example(path: str, channels: int | None, index: int, name: str) -> np.ndarray:
    """`read_image`, with a file Pillow cannot decode (empty, truncated, not an image) refused in
    one line naming example ``index`` of ``name`` and its path."""
    try:
        return read_image(path, channels)
    except (UnsupportedImage, MemoryError):
        raise
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, …
        reason = (str(error).strip().splitlines() or [""])[0]
        raise BadExample(index, f"cannot read example {index} of {name} ({path}): "
                                f"{type(error).__name__}: {reason}") from error


def one_position(index, length: int, name: str) -> int:
    """The single integer ``index`` (negative: from the end) as a position in 0..length-1;
    TypeError for a non-integer, IndexError (one line naming ``name``) when out of range."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"{name}: read takes one integer index, got {index!r}.")
    position = int(index) + (length if index < 0 else 0)
    if not 0 <= position < length:
        raise IndexError(f"index {index} is out of range for {length} examples of {name}.")
    return position


def ordered_map(function, items: Sequence, pixels: int):
    """Yield ``function(item)`` for ``items`` in order, computed in a few threads when images of
    ``pixels`` (H·W) are large enough for that to pay (Pillow releases the GIL while decoding)."""
    if len(items) < 2 or _THREADS < 2 or pixels < THREADED_PIXELS:
        yield from map(function, items)
        return
    with concurrent.futures.ThreadPoolExecutor(min(_THREADS, len(items))) as pool:
        yield from pool.map(function, items)


class ImageFiles:
    """``N`` image files read as a ``[N, H, W, C]`` uint8 array, decoded when indexed.

    ``paths`` are the files in example order; ``(height, width)`` is the size every image must
    have (``size_source`` says where it came from, for the message when one differs); ``channels``
    is 3 (RGB) or 1 (grayscale). ``name`` names the set in messages.

    ``files[i]`` is ``[H, W, C]``; ``files[slice]`` and ``files[indices]`` (a 1-D integer array,
    or a boolean mask) are ``[n, H, W, C]`` in index order. ``files.take(indices)`` is the lazy
    subset. ``np.asarray(files)`` is refused: index it to decode (``files[:]`` for all).
    ``files.read(i)`` is example i as decoded, ``[H_i, W_i, C]``, its size unchecked.

    ``image_size=S`` (then ``height`` and ``width`` are ignored): images of any sizes, read one at
    a time with ``read`` and made ``S``×``S`` by the ImageNet recipe; ``shape`` is ``(N, S, S, C)``
    and indexing is refused.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths: Sequence[str], height: int, width: int, channels: int, *,
                 name: str, size_source: str = "", image_size: int | None = None):
        if channels not in (1, 3):
            raise ValueError(f"{name}: channels must be 1 or 3, got {channels}.")
        if image_size is not None:
            if image_size < 1:
                raise ValueError(f"{name}: image_size must be ≥ 1, got {image_size}.")
            height = width = image_size = int(image_size)
        self.paths = tuple(str(path) for path in paths)
        self.shape = (len(self.paths), int(height), int(width), int(channels))
        self.name = name
        self.size_source = size_source
        self.image_size = image_size

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        sizes = "" if self.image_size is None else ", images of varying sizes"
        return f"ImageFiles({self.name}, shape={self.shape}{sizes})"

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"{self!r} decodes its files when indexed: use files[indices] "
                        f"(files[:] decodes all {len(self)}), not np.asarray(files).")

    def _positions(self, index) -> np.ndarray:
        """``index`` as an int64 array of positions in 0..N-1."""
        if isinstance(index, slice):
            return np.arange(len(self))[index]
        if isinstance(index, tuple):
            raise TypeError(f"{self.name}: index with an int, a slice or a 1-D integer array, "
                            f"got the tuple {index!r}.")
        positions = np.asarray(index)
        if positions.dtype == bool and positions.shape == (len(self),):
            return np.flatnonzero(positions)
        if positions.ndim != 1 or not (positions.size == 0 or np.issubdtype(positions.dtype, np.integer)):
            raise TypeError(f"{self.name}: index with an int, a slice or a 1-D integer array, got "
                            f"{positions.dtype} of shape {positions.shape}.")
        positions = positions.astype(np.int64)
        bad = (positions < -len(self)) | (positions >= len(self))
        if bad.any():
            raise IndexError(f"index {positions[bad][0]} is out of range for {len(self)} examples of {self.name}.")
        return np.where(positions < 0, positions + len(self), positions)

    def read(self, index: int) -> np.ndarray:
        """Example ``index`` as decoded, ``[H_i, W_i, C]`` uint8 at its own size (RGB or
        grayscale as ``shape[3]`` says); a file Pillow cannot decode is refused in one line
        naming the example and its path."""
        position = one_position(index, len(self), self.name)
        return read_example(self.paths[position], self.shape[3], position, self.name)

    def _read(self, position: int) -> np.ndarray:
        """Example ``position`` as ``[H, W, C]`` uint8, its size checked."""
        path = self.paths[position]
        array = read_example(path, self.shape[3], position, self.name)
        if array.shape[:2] != self.shape[1:3]:
            height, width = self.shape[1:3]
            raise BadExample(position, f"{path} (example {position} of {self.name}) is {array.shape[0]}×"
                                       f"{array.shape[1]} (H×W) but {self.size_source} is {height}×{width}: every "
                                       "image must have one size; resize it first")
        return array

    def __getitem__(self, index) -> np.ndarray:
        if self.image_size is not None:
            raise TypeError(f"{self!r} holds images of varying sizes: read one with files.read(i); "
                            "input_pipeline.make_batch makes them {0}×{0} with the ImageNet recipe "
                            "(safjax.image_recipes).".format(self.image_size))
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            return self._read(one_position(index, len(self), self.name))
        rows = self._positions(index).tolist()
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        for row, array in enumerate(ordered_map(self._read, rows, self.shape[1] * self.shape[2])):
            out[row] = array
        return out

    def take(self, indices) -> ImageFiles:
        """The examples ``indices`` (1-D integer array) as a new lazy `ImageFiles`, in that order."""
        positions = self._positions(indices)
        name = self.name if self.name.startswith("a subset of ") else f"a subset of {self.name}"
        return ImageFiles([self.paths[p] for p in positions.tolist()], *self.shape[1:], name=name,
                          size_source=self.size_source, image_size=self.image_size)
