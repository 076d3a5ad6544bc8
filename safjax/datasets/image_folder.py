"""Images in class-per-folder layout, ``<root>/<split>/<class>/<image>``, streamed from disk.

The layout is that of torchvision's ``ImageFolder`` and TFDS's ``ImageFolder``: classes are the
sub-folders of ``<root>/<split>``, sorted by name, and label i is the i-th class; image files
(.png, .jpg, .jpeg, .bmp, .gif, .ppm, .pgm, .tif, .tiff, .webp; hidden files and other files are
skipped) are read in name order within a class. Every image must have the size of the first
train image. Grayscale images stay one channel when every train image is grayscale; otherwise
every image becomes RGB (grayscale replicated, palette expanded, alpha dropped); train and test
always have the same number of channels.

`load` lists a split and returns its images as an `ImageFiles` (`safjax.datasets.image_files`):
paths only, each image decoded with Pillow when a batch needs it, so a data set need not fit
in memory. What is decoded when:

- the first `load` of a root (or after its train files change) decodes every *train* image once,
  a chunk at a time (never the whole set in memory), with progress: their one size, whether all
  are grayscale, and the per-channel ``mean``/``std`` of the train pixels on the [0, 1] scale
  (exact int64 sums), used for every split so train and test are normalised alike (None when
  ``<root>/train`` does not exist; the pass is then over the split itself, for its size);
- indexing ``dataset.inputs`` decodes those images (a test image of another size, or a file
  Pillow cannot decode, is refused then, in one line naming the file).

``image_size=S > 0`` is the ImageNet recipe instead (`safjax.image_recipes`; images may differ in
size): the files are only listed, never decoded at load, every image is read as RGB, and the
mean/std are ImageNet's (`IMAGENET_MEAN`, `IMAGENET_STD`); batches are S×S views of the images.

The pass's result is a small JSON file ``<split>-<root key>-<fingerprint>.json`` in
``$SAFJAX_CACHE_DIR/image_folder`` (default ``~/.cache/safjax/image_folder``), keyed by the
absolute root, the split and a fingerprint of the files (class names, file count, total bytes,
newest modification time of files and class folders): adding, removing, editing or moving an
image makes a new entry (stale entries of the same root and split, older versions' ``.npz``
arrays included, are deleted). An unwritable cache folder is one warning (the pass then reruns
on every load). The temporary file of a writer killed mid-write is removed by the next load
(`safjax.datasets.cache_files`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tarfile
import tempfile
import time
import warnings
import zipfile

import numpy as np

from safjax.datasets import cache_files
from safjax.datasets.base import Dataset
from safjax.datasets.bad_example import BadExample
from safjax.datasets.image_files import ImageFiles, ordered_map, read_example

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
CACHE_ENV = "SAFJAX_CACHE_DIR"
_CACHE_VERSION = 2  # bump when the cached statistics' meaning changes (1: .npz of decoded arrays)
# Per-channel (R, G, B) mean and standard deviation of ImageNet's training pixels, on the [0, 1] scale.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")


@dataclasses.dataclass(frozen=True)
class _Listing:
    classes: tuple[str, ...]
    files: tuple[tuple[str, int], ...]  # (path, label) in label, then name order
    fingerprint: str


def cache_dir() -> str:
    """The folder of the cached train-split statistics (JSON): ``$SAFJAX_CACHE_DIR/image_folder``
    or ``~/.cache/safjax/image_folder``."""
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


@dataclasses.dataclass(frozen=True)
class _Statistics:
    """What one pass over a split's images gives (and its JSON cache entry holds)."""

    classes: tuple[str, ...]
    height: int
    width: int
    channels: int  # 1 when every image is grayscale, else 3
    mean: tuple[float, ...]  # [channels], on the [0, 1] scale
    std: tuple[float, ...]
    size_source: str  # "the first train image <path>", for size messages


def _accumulate(totals: np.ndarray, image: np.ndarray) -> None:
    """Add the per-channel pixel sums and sums of squares of ``image [H, W, 1 or 3]`` uint8 to
    ``totals [2, 3]`` int64 (a grayscale image counts in all three channels, as if replicated)."""
    flat = image.reshape(-1, image.shape[-1]).astype(np.int64)
    totals[0] += flat.sum(0)
    totals[1] += (flat * flat).sum(0)


def _moments(totals: np.ndarray, count: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation ``[channels]`` on the [0, 1] scale of ``count``
    pixels per channel, from exact int64 ``totals``."""
    mean = totals[0, :channels] / count
    var = np.maximum(totals[1, :channels] / count - mean * mean, 0.0)
    return mean / 255.0, np.sqrt(var) / 255.0


def _check_size(paths: list[str], i: int, image: np.ndarray, size: tuple[int, int], first: int) -> None:
    if image.shape[:2] != size:
        raise BadExample(i, f"all images must have one size, but {paths[i]} is {image.shape[0]}×{image.shape[1]} "
                            f"(H×W) and {paths[first]} is {size[0]}×{size[1]}: resize them first")


def _scan(root: str, split: str, listing: _Listing, skip_bad: bool = False, chunk: int = 256) -> _Statistics:
    """Decode every image of ``root/split`` once, ``chunk`` at a time (in a few threads for large
    images), with progress (see `safjax.progress`: a bar on a terminal, a line every 10 s
    otherwise): their one size (the first image's), whether all are grayscale, and the
    per-channel mean and std. An unreadable or wrongly sized image raises `BadExample`, or with
    ``skip_bad`` is left out, with one line naming it."""
    from safjax import progress

    paths = [path for path, _ in listing.files]
    name = f"{split} split of image_folder:{root}"
    totals, colour, counted, size, first = np.zeros((2, 3), np.int64), False, 0, None, 0

    def read(i: int) -> np.ndarray | None:  # [H, W, 1 or 3] uint8, None for a skipped one
        try:
            image = read_example(paths[i], None, i, name)
            if size is not None:
                _check_size(paths, i, image, size, first)
            return image
        except BadExample as bad:
            if not skip_bad:
                raise
            print(f"skipped (--skip_bad_examples): {bad.detail}", flush=True)
            return None

    while size is None and first < len(paths):  # the first readable image sets the size
        image = read(first)
        size, first = (image.shape[:2], first) if image is not None else (None, first + 1)
    if size is None:
        raise ValueError(f"no image of {os.path.join(root, split)} can be read.")
    meter = progress.Progress(len(paths), f"reading {split}", "images", interval_s=10.0)
    try:
        for start in range(0, len(paths), chunk):  # one chunk of images in memory at a time
            block = range(start, min(start + chunk, len(paths)))
            for image in ordered_map(read, block, size[0] * size[1]):
                meter.update()
                if image is not None:
                    colour, counted = colour or image.shape[2] == 3, counted + 1
                    _accumulate(totals, image)
    finally:
        meter.close()
    channels = 3 if colour else 1
    mean, std = _moments(totals, counted * size[0] * size[1], channels)
    return _Statistics(listing.classes, int(size[0]), int(size[1]), channels, tuple(mean.tolist()),
                       tuple(std.tolist()), f"the first {split} image {paths[first]}")


def _cache_path(root: str, split: str, fingerprint: str) -> tuple[str, str]:
    """(cache file, prefix shared by every entry of this root and split)."""
    root_key = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:16]
    prefix = f"{split}-{root_key}-"
    return os.path.join(cache_dir(), f"{prefix}{fingerprint}.json"), prefix


def _read_cache(path: str, listing: _Listing) -> _Statistics | None:
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
        if entry.pop("version") != _CACHE_VERSION:
            return None
        stats = _Statistics(**{**entry, "classes": tuple(entry["classes"]), "mean": tuple(entry["mean"]),
                               "std": tuple(entry["std"])})
    except (FileNotFoundError, NotADirectoryError):  # no entry (yet)
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        warnings.warn(f"ignoring unreadable image_folder cache {path} ({type(error).__name__}: {error}); "
                      "reading the images again.")
        return None
    return stats if stats.classes == listing.classes else None


def _write_cache(path: str, prefix: str, stats: _Statistics) -> None:
    """Write atomically (temporary file + rename), then delete stale entries of this root and split
    (older versions' .npz arrays included)."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=directory, prefix=cache_files.temp_prefix(), suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as f:
                json.dump({"version": _CACHE_VERSION, **dataclasses.asdict(stats)}, f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        for name in os.listdir(directory):
            if name.startswith(prefix) and name != os.path.basename(path):
                os.unlink(os.path.join(directory, name))
    except OSError as error:
        warnings.warn(f"could not write the image_folder cache in {directory} ({error}); set "
                      f"{CACHE_ENV} to a writable folder to skip reading the images again next time.")


def _statistics(root: str, split: str, listing: _Listing, skip_bad: bool = False) -> _Statistics:
    """`_scan` of ``root/split``, cached as JSON under the split's fingerprint."""
    path, prefix = _cache_path(root, split, listing.fingerprint)
    cache_files.remove_stale(os.path.dirname(path))
    cached = _read_cache(path, listing)
    if cached is not None:
        return cached
    print(f"reading the {len(listing.files)} images of {os.path.join(root, split)} once for their size and "
          f"pixel statistics (cached in {os.path.dirname(path)}, ${CACHE_ENV} to move it) …", flush=True)
    began = time.time()
    stats = _scan(root, split, listing, skip_bad)
    _write_cache(path, prefix, stats)
    print(f"read {len(listing.files)} {split} images in {time.time() - began:.1f} s: "
          f"{stats.height}×{stats.width}×{stats.channels}", flush=True)
    return stats


def load(root: str, split: str, image_size: int = 0, skip_bad_examples: bool = False) -> Dataset:
    """``split`` of the class-per-folder images under ``root``: inputs an `ImageFiles` (a lazy
    ``[N, H, W, C]`` uint8 array, decoded when indexed; C = 3, or 1 when every train image is
    grayscale), ``[N]`` int32 labels, classes sorted by name, the train split's per-channel
    mean/std (None without a train split).

    Only the train split (this split where there is none) is decoded here, once per change of
    its files (`_statistics`). Raises FileNotFoundError for a missing root, split or empty class
    folder, ValueError for a single class folder, an archive given as root, train images of
    different sizes or undecodable train files, and when the split's class folders differ from
    the train split's (the labels would disagree). A test image of another size or an
    undecodable one is refused when it is read.

    ``image_size > 0``: the ImageNet recipe (see the module's docstring): nothing is decoded here,
    inputs are an `ImageFiles` of RGB images of any sizes and ``Dataset.image_size`` is set.
    ``skip_bad_examples``: the statistics pass leaves out (and names) unreadable train images
    instead of raising; batches skip them too (`safjax.input_pipeline.make_batch`).
    """
    if image_size < 0:
        raise ValueError(f"image_size must be ≥ 0 (0 = images at their stored size), got {image_size}.")
    root = os.path.expanduser(root)
    listing = _list_split(root, split)
    has_train = os.path.isdir(os.path.join(root, "train"))
    if image_size > 0:
        return _load_for_recipe(root, split, listing, has_train, image_size)
    stats_split = "train" if has_train else split
    stats_listing = listing if stats_split == split else _list_split(root, stats_split)
    if stats_listing.classes != listing.classes:
        raise ValueError(f"the class folders of {os.path.join(root, split)} ({', '.join(listing.classes)}) differ "
                         f"from those of {os.path.join(root, 'train')} ({', '.join(stats_listing.classes)}): labels "
                         "are class indices, so every split needs the same class folders.")
    stats = _statistics(root, stats_split, stats_listing, skip_bad_examples)
    name = f"image_folder:{root}"
    inputs = ImageFiles([path for path, _ in listing.files], stats.height, stats.width, stats.channels,
                        name=f"{split} split of {name}", size_source=stats.size_source)
    labels = np.asarray([label for _, label in listing.files], np.int32)
    mean, std = (stats.mean, stats.std) if has_train else (None, None)
    return Dataset(name, inputs, labels, len(listing.classes), mean=mean, std=std, augment=True)


def _load_for_recipe(root: str, split: str, listing: _Listing, has_train: bool, image_size: int) -> Dataset:
    """`load` with the ImageNet recipe: the listed files as RGB images of any sizes, ImageNet's
    mean/std, ``image_size`` set; the class folders (not the files) checked against train's."""
    if has_train and split != "train":
        train_classes = tuple(_subfolders(os.path.join(root, "train")))
        if train_classes != listing.classes:
            raise ValueError(f"the class folders of {os.path.join(root, split)} ({', '.join(listing.classes)}) "
                             f"differ from those of {os.path.join(root, 'train')} ({', '.join(train_classes)}): "
                             "labels are class indices, so every split needs the same class folders.")
    name = f"image_folder:{root}"
    inputs = ImageFiles([path for path, _ in listing.files], image_size, image_size, 3,
                        name=f"{split} split of {name}", image_size=image_size)
    labels = np.asarray([label for _, label in listing.files], np.int32)
    return Dataset(name, inputs, labels, len(listing.classes), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   augment=True, image_size=image_size)
