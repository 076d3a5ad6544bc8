"""Images in class-per-folder layout, ``<root>/<split>/<class>/<image>``, decoded with Pillow.

The layout is that of torchvision's ``ImageFolder`` and TFDS's ``ImageFolder``: classes are the
sub-folders of ``<root>/<split>``, sorted by name, and label i is the i-th class; image files
(.png, .jpg, .jpeg, .bmp, .gif, .ppm, .pgm, .tif, .tiff, .webp; hidden files and other files are
skipped) are read in name order within a class. Every image must have the same height and width.
Grayscale images stay one channel when all images are grayscale; otherwise every image becomes
RGB (grayscale replicated, palette expanded, alpha dropped).

Decoding tens of thousands of files takes a while, so the decoded arrays are cached as one
``.npz`` per split in ``$SAFJAX_CACHE_DIR/image_folder`` (default
``~/.cache/safjax/image_folder``), keyed by the absolute root, the split and a fingerprint of
the files (class names, file count, total bytes, newest modification time of files and class
folders): adding, removing, editing or moving an image makes a new entry (the stale one of the
same root and split is deleted). The temporary file of a writer killed mid-write is removed by
the next load (`safjax.datasets.cache_files`).

``mean``/``std`` are the per-channel mean and standard deviation of the *train* split's pixels on
the [0, 1] scale, for every split (so train and test are normalised alike); they are None when
``<root>/train`` does not exist.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import tarfile
import tempfile
import time
import warnings
import zipfile

import numpy as np

from safjax.datasets import cache_files
from safjax.datasets.base import Dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
CACHE_ENV = "SAFJAX_CACHE_DIR"
_CACHE_VERSION = 1  # bump when the cached arrays' meaning changes
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")


@dataclasses.dataclass(frozen=True)
class _Listing:
    classes: tuple[str, ...]
    files: tuple[tuple[str, int], ...]  # (path, label) in label, then name order
    fingerprint: str


def cache_dir() -> str:
    """The folder of cached decoded splits: ``$SAFJAX_CACHE_DIR/image_folder`` or
    ``~/.cache/safjax/image_folder``."""
    base = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "safjax")
    return os.path.join(base, "image_folder")


def _archive_hint(root: str) -> str:
    """How to extract an archive given as ``root``, naming the folder it will create."""
    target = os.path.dirname(os.path.abspath(root))
    top = None
    try:
        if zipfile.is_zipfile(root):
            with zipfile.ZipFile(root) as archive:
                names = archive.namelist()
            top = names[0].split("/")[0] if names else None
            command = f"unzip {root} -d {target}"
        else:
            with tarfile.open(root) as archive:
                first = archive.next()  # reads only the first header
            top = first.name.split("/")[0] if first else None
            command = f"tar xf {root} -C {target}"
    except (OSError, tarfile.TarError, zipfile.BadZipFile):
        command = f"tar xf {root} -C {target}"
    folder = os.path.join(target, top) if top else f"{target}/<folder it creates>"
    return (f"image_folder root {root!r} is an archive, not a folder: extract it first "
            f"(`{command}`) and pass image_folder:{folder}.")


def _subfolders(path: str) -> list[str]:
    return sorted(entry.name for entry in os.scandir(path) if entry.is_dir() and not entry.name.startswith("."))


def _list_split(root: str, split: str) -> _Listing:
    """Check the layout of ``root/split`` and list its images; raise naming what is wrong."""
    if os.path.isfile(root) and root.lower().endswith(_ARCHIVE_SUFFIXES):
        raise ValueError(_archive_hint(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image_folder root {root!r} does not exist (or is not a folder): expected "
                                f"<root>/{split}/<class>/<image> files.")
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        found = ", ".join(_subfolders(root)) or "none"
        raise FileNotFoundError(f"image_folder {root!r} has no {split!r} split: expected the folder "
                                f"{split_dir} (splits found: {found}).")
    classes = _subfolders(split_dir)
    if not classes:
        raise FileNotFoundError(f"{split_dir} has no class folders: expected {split_dir}/<class>/<image>.")
    if len(classes) < 2:  # one class: every label 0, and a "test accuracy 1.0000" that means nothing
        raise ValueError(f"image_folder {root!r} has one class folder in {split_dir} ({classes[0]!r}): "
                         "classification needs ≥ 2 classes, one folder each.")
    files, total_bytes, newest = [], 0, os.stat(split_dir).st_mtime_ns
    for label, name in enumerate(classes):
        class_dir = os.path.join(split_dir, name)
        newest = max(newest, os.stat(class_dir).st_mtime_ns)
        entries = sorted((entry for entry in os.scandir(class_dir)
                          if entry.is_file() and not entry.name.startswith(".")
                          and entry.name.lower().endswith(IMAGE_EXTENSIONS)), key=lambda entry: entry.name)
        if not entries:
            raise FileNotFoundError(f"class folder {class_dir} has no images (expected files ending in "
                                    f"{', '.join(IMAGE_EXTENSIONS)}): add images or remove the folder.")
        for entry in entries:
            stat = entry.stat()
            total_bytes += stat.st_size
            newest = max(newest, stat.st_mtime_ns)
            files.append((entry.path, label))
    key = repr((_CACHE_VERSION, classes, len(files), total_bytes, newest)).encode()
    return _Listing(tuple(classes), tuple(files), hashlib.sha256(key).hexdigest()[:16])


def _decode(path: str):
    """One image as ``[H, W, 1]`` (grayscale) or ``[H, W, 3]`` (anything else) uint8."""
    from PIL import Image  # imported lazily: only this loader needs Pillow

    try:
        with Image.open(path) as image:
            if image.mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F"):
                if image.mode not in ("1", "L", "LA"):
                    raise ValueError(f"{path} is a {image.mode} (16-bit or float) image: only 8-bit "
                                     "images are supported; convert it to 8-bit first.")
                return np.asarray(image.convert("L"))[..., None]
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except OSError as error:
        raise ValueError(f"cannot decode image {path}: {error}") from error


def _decode_all(listing: _Listing, description: str = "decoding") -> tuple[np.ndarray, np.ndarray]:
    """All images as ``[N, H, W, C]`` uint8 and labels ``[N]`` int32, with progress (see
    `safjax.progress`: a bar on a terminal, a line every 10 s otherwise)."""
    from safjax import progress

    paths = [path for path, _ in listing.files]
    meter = progress.Progress(len(paths), description, "images", interval_s=10.0)
    arrays = []
    # Pillow releases the GIL while decoding, so threads decode in parallel.
    try:
        with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            for array in pool.map(_decode, paths):
                arrays.append(array)
                meter.update()
    finally:
        meter.close()
    first_size = arrays[0].shape[:2]
    for path, array in zip(paths, arrays):
        if array.shape[:2] != first_size:
            raise ValueError(f"all images must have one size, but {path} is {array.shape[0]}×{array.shape[1]} "
                             f"(H×W) and {paths[0]} is {first_size[0]}×{first_size[1]}: resize them first.")
    if any(array.shape[2] == 3 for array in arrays):  # mixed: grayscale becomes RGB
        arrays = [np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array for array in arrays]
    labels = np.asarray([label for _, label in listing.files], np.int32)
    return np.stack(arrays), labels


def _channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation ``[C]`` float64 of ``images [N, H, W, C]`` uint8,
    on the [0, 1] scale (accumulated exactly in int64, in chunks to bound memory)."""
    channels = images.shape[-1]
    total = np.zeros(channels, np.int64)
    total_sq = np.zeros(channels, np.int64)
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].reshape(-1, channels).astype(np.int64)
        total += block.sum(0)
        total_sq += (block * block).sum(0)
    count = images.size // channels
    mean = total / count
    var = np.maximum(total_sq / count - mean * mean, 0.0)
    return mean / 255.0, np.sqrt(var) / 255.0


def _cache_path(root: str, split: str, fingerprint: str) -> tuple[str, str]:
    """(cache file, prefix shared by every entry of this root and split)."""
    root_key = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:16]
    prefix = f"{split}-{root_key}-"
    return os.path.join(cache_dir(), f"{prefix}{fingerprint}.npz"), prefix


def _read_cache(path: str, listing: _Listing):
    try:
        with np.load(path, allow_pickle=False) as cached:
            if tuple(cached["classes"].tolist()) != listing.classes:
                return None
            return cached["images"], cached["labels"], cached["mean"], cached["std"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        warnings.warn(f"ignoring unreadable image_folder cache {path} ({error}); decoding again.")
        return None


def _write_cache(path: str, prefix: str, images, labels, classes, mean, std) -> None:
    """Write atomically (temporary file + rename), then delete stale entries of this root and split."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=directory, prefix=cache_files.temp_prefix(), suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as f:
                np.savez(f, images=images, labels=labels, classes=np.asarray(classes, dtype=str),
                         mean=mean, std=std)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        for name in os.listdir(directory):
            if name.startswith(prefix) and name != os.path.basename(path):
                os.unlink(os.path.join(directory, name))
    except OSError as error:
        warnings.warn(f"could not write the image_folder cache in {directory} ({error}); set "
                      f"{CACHE_ENV} to a writable folder to skip decoding next time.")


def _load_split(root: str, split: str) -> tuple[_Listing, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(listing, images, labels, mean [C], std [C] of this split's own pixels), cached."""
    listing = _list_split(root, split)
    path, prefix = _cache_path(root, split, listing.fingerprint)
    cache_files.remove_stale(os.path.dirname(path))
    cached = _read_cache(path, listing)
    if cached is not None:
        return (listing, *cached)
    split_dir = os.path.join(root, split)
    print(f"decoding {len(listing.files)} images of {split_dir} (once: the arrays are cached in "
          f"{os.path.dirname(path)}, ${CACHE_ENV} to move it) …", flush=True)
    began = time.time()
    images, labels = _decode_all(listing, f"decoding {split}")
    mean, std = _channel_stats(images)
    _write_cache(path, prefix, images, labels, listing.classes, mean, std)
    print(f"decoded {len(images)} {split} images in {time.time() - began:.1f} s", flush=True)
    return listing, images, labels, mean, std


def _train_stats(root: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the train split: read alone from its cache entry when there is
    one (an .npz member loads on access), else by loading (and caching) the train split."""
    listing = _list_split(root, "train")
    path, _ = _cache_path(root, "train", listing.fingerprint)
    try:
        with np.load(path, allow_pickle=False) as cached:
            return cached["mean"], cached["std"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        _, _, _, mean, std = _load_split(root, "train")
        return mean, std


def load(root: str, split: str) -> Dataset:
    """``split`` of the class-per-folder images under ``root``: ``[N, H, W, C]`` uint8 images
    (C = 3, or 1 when every image is grayscale), ``[N]`` int32 labels, classes sorted by name.

    Raises FileNotFoundError for a missing root, split or empty class folder, ValueError for a
    single class folder, an archive given as root, images of different sizes or undecodable
    files, and when the split's class folders differ from the train split's (the labels would
    disagree).
    """
    root = os.path.expanduser(root)
    listing, images, labels, mean, std = _load_split(root, split)
    train_dir = os.path.join(root, "train")
    if split == "train":
        stats = (mean, std)
    elif os.path.isdir(train_dir):
        train_classes = tuple(_subfolders(train_dir))
        if train_classes != listing.classes:
            raise ValueError(f"the class folders of {os.path.join(root, split)} ({', '.join(listing.classes)}) "
                             f"differ from those of {train_dir} ({', '.join(train_classes)}): labels are "
                             "class indices, so every split needs the same class folders.")
        stats = _train_stats(root)
    else:
        stats = None
    mean, std = (tuple(float(v) for v in s) for s in stats) if stats else (None, None)
    return Dataset(f"image_folder:{root}", images, labels, len(listing.classes), mean=mean, std=std,
                   augment=True)
