"""The image data pipeline: CIFAR through TFDS, class-per-folder images, augmentation,
deterministic minibatches (their grain execution: tests/test_data_loader.py). No network: TFDS data is mocked or written locally."""

from __future__ import annotations

import io
import json
import os
import pathlib
import pickle
import re
import socket
import tarfile

import chex
import numpy as np
import pytest
from PIL import Image

from safjax import augment, datasets, input_pipeline
from safjax.datasets import Dataset, image_files, image_folder, tfds_images
from safjax.datasets.image_files import ImageFiles

import real_cifar

tfds = pytest.importorskip("tensorflow_datasets")



@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test caches image-folder statistics under its own tmp_path, never in ~/.cache."""
    monkeypatch.setenv(image_folder.CACHE_ENV, str(tmp_path / "cache"))


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a network connection."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# ----------------------------------------------------------------------------- CIFAR via TFDS

CIFAR_LOADERS = [
    pytest.param(tfds_images.load_cifar10, "cifar10", 10, tfds_images.CIFAR10_MEAN, id="cifar10"),
    pytest.param(tfds_images.load_cifar100, "cifar100", 100, tfds_images.CIFAR100_MEAN, id="cifar100"),
]


@pytest.mark.parametrize("loader, name, num_classes, mean", CIFAR_LOADERS)
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_mocked(loader, name, num_classes, mean, split, no_network):
    with tfds.testing.mock_data(num_examples=13):
        dataset = loader(split, data_dir="/nonexistent/tfds")
    chex.assert_shape(dataset.inputs, (13, 32, 32, 3))
    chex.assert_type(dataset.inputs, np.uint8)
    chex.assert_shape(dataset.labels, (13,))
    chex.assert_type(dataset.labels, np.int32)
    assert 0 <= dataset.labels.min() and dataset.labels.max() < num_classes
    assert (dataset.name, dataset.num_classes, dataset.temporal, dataset.augment) == (name, num_classes, False, True)
    assert dataset.mean == mean and len(dataset.std) == 3 and all(0.2 < s < 0.3 for s in dataset.std)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _fake_cifar_image(i: int) -> np.ndarray:
    """Example i of the locally written CIFAR: recognisable by its first pixel."""
    image = np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    image[0, 0] = (i, 7, 11)
    return image


@pytest.fixture(scope="module")
def prepared_tfds_dir(tmp_path_factory):
    """A TFDS data_dir with small but real ArrayRecord cifar10 and cifar100 (train: 23, test: 9
    examples), written by the real builders' writers with only the generator replaced: no
    download, no TensorFlow (the images are given PNG-encoded)."""
    from tensorflow_datasets.image_classification import cifar

    data_dir = tmp_path_factory.mktemp("tfds")

    def generator(self, num_examples, num_classes):
        del self
        for i in range(num_examples):
            example = {"id": f"{i:05d}", "image": _png(_fake_cifar_image(i)), "label": (3 * i) % num_classes}
            if num_classes == 100:
                example["coarse_label"] = i % 20
            yield i, example

    class LocalCifar10(cifar.Cifar10, skip_registration=True):
        name = "cifar10"

        def _split_generators(self, dl_manager):
            return {"train": generator(self, 23, 10), "test": generator(self, 9, 10)}

    class LocalCifar100(cifar.Cifar100, skip_registration=True):
        name = "cifar100"

        def _split_generators(self, dl_manager):
            return {"train": generator(self, 23, 100), "test": generator(self, 9, 100)}

    config = tfds.download.DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP)
    for builder_cls in (LocalCifar10, LocalCifar100):
        builder_cls(data_dir=str(data_dir), file_format="array_record").download_and_prepare(download_config=config)
    return str(data_dir)


@pytest.mark.parametrize("loader, name, num_classes, mean", CIFAR_LOADERS)
def test_cifar_from_array_record_files(loader, name, num_classes, mean, prepared_tfds_dir, no_network):
    for split, num_examples in (("train", 23), ("test", 9)):
        dataset = loader(split, data_dir=prepared_tfds_dir)
        chex.assert_shape(dataset.inputs, (num_examples, 32, 32, 3))
        chex.assert_type(dataset.labels, np.int32)
        # TFDS shuffles records when writing: identify each example by its first pixel.
        ids = dataset.inputs[:, 0, 0, 0].astype(int)
        assert sorted(ids) == list(range(num_examples))
        for image, label, i in zip(dataset.inputs, dataset.labels, ids):
            np.testing.assert_array_equal(image, _fake_cifar_image(i))
            assert label == (3 * i) % num_classes
    via_registry = datasets.load(name, "test", data_dir=prepared_tfds_dir)
    np.testing.assert_array_equal(via_registry.inputs, loader("test", data_dir=prepared_tfds_dir).inputs)


@pytest.mark.parametrize("loader, name, num_classes, mean", CIFAR_LOADERS)
def test_cifar_absent_says_where_and_how(loader, name, num_classes, mean, tmp_path, no_network):
    data_dir = tmp_path / "empty"
    data_dir.mkdir()
    with pytest.raises(FileNotFoundError) as raised:
        loader("train", data_dir=str(data_dir))
    message = str(raised.value)
    assert str(data_dir / name) in message
    assert "--data_dir" in message and f"tfds build {name}" in message and "image_folder:" in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert list(data_dir.iterdir()) == []  # nothing downloaded or created


def test_cifar_absent_default_data_dir(no_network):
    default = tfds.builder("cifar10")  # $TFDS_DATA_DIR (read when TFDS is imported) or ~/tensorflow_datasets
    if default.is_prepared():
        pytest.skip(f"CIFAR-10 is prepared in the default {default.data_dir}")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{default.data_dir} (the default data_dir")):
        tfds_images.load_cifar10("test")


def test_cifar_rejects_unknown_split():
    with pytest.raises(ValueError, match="`split` must be one of"):
        tfds_images.load_cifar10("validation")


# ----------------------------------------------------------------------------- image folders


def _write_folder(root, split, images_per_class, *, size=(6, 5), mode="RGB", seed=0):
    """Write PNGs ``root/split/<class>/<i>.png``; return {class: [arrays in name order]}."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, count in images_per_class.items():
        folder = root / split / name
        folder.mkdir(parents=True)
        channels = {"RGB": 3, "L": 1}[mode]
        arrays = [rng.integers(0, 256, (*size, channels), dtype=np.uint8) for _ in range(count)]
        for i, array in enumerate(arrays):
            Image.fromarray(array[..., 0] if mode == "L" else array, mode).save(folder / f"{i:03d}.png")
        written[name] = arrays
    return written


# Created out of alphabetical order: labels must follow the sorted names.
CLASSES = {"zebra": 2, "ant": 3, "moth": 1}


def _expected(written):
    names = sorted(written)
    images = np.stack([image for name in names for image in written[name]])
    labels = np.asarray([label for label, name in enumerate(names) for _ in written[name]], np.int32)
    return images, labels


@pytest.fixture(params=["one thread", "threads"])
def decode_threads(request, monkeypatch):
    """Decode batches in one thread (small images) or, as for large images, in four."""
    if request.param == "threads":
        monkeypatch.setattr(image_files, "THREADED_PIXELS", 0)
        monkeypatch.setattr(image_files, "_THREADS", 4)


def test_image_folder_streams_its_files(tmp_path, decode_threads):
    root = tmp_path / "images"
    train = _write_folder(root, "train", CLASSES, seed=0)
    test = _write_folder(root, "test", {"zebra": 1, "ant": 1, "moth": 2}, seed=1)
    dataset = image_folder.load(str(root), "train")
    images, labels = _expected(train)
    assert isinstance(dataset.inputs, ImageFiles)
    assert (dataset.inputs.shape, dataset.inputs.dtype, dataset.inputs.ndim) == ((6, 6, 5, 3), np.uint8, 4)
    chex.assert_type(dataset.labels, np.int32)
    np.testing.assert_array_equal(dataset.labels, labels)  # ant=0, moth=1, zebra=2
    assert (dataset.num_classes, dataset.augment, dataset.temporal) == (3, True, False)
    np.testing.assert_array_equal(dataset.inputs[[3, 1]], images[[3, 1]])  # PNG is lossless: exact pixels
    np.testing.assert_array_equal(dataset.inputs[-1], images[-1])
    np.testing.assert_array_equal(dataset.inputs[1:5:2], images[1:5:2])
    np.testing.assert_array_equal(dataset.inputs[:], images)
    np.testing.assert_array_equal(dataset.inputs[[5, 0, 3, 1, 0]], images[[5, 0, 3, 1, 0]])  # index order
    with pytest.raises(TypeError, match=r"decodes its files when indexed: use files\[indices\]"):
        np.asarray(dataset.inputs)
    with pytest.raises(IndexError, match="index 6 is out of range for 6 examples"):
        dataset.inputs[[0, 6]]

    test_set = image_folder.load(str(root), "test")
    np.testing.assert_array_equal(test_set.inputs[:], _expected(test)[0])
    assert test_set.mean == dataset.mean and test_set.std == dataset.std  # train statistics
    via_registry = datasets.load(f"image_folder:{root}", "test")
    assert via_registry.inputs.paths == test_set.inputs.paths


def test_image_files_pickle_to_their_paths(tmp_path):
    root = tmp_path / "images"
    images, _ = _expected(_write_folder(root, "train", CLASSES))
    inputs = image_folder.load(str(root), "train").inputs
    data = pickle.dumps(inputs)
    assert len(data) < 200 * len(inputs) + 2000
    again = pickle.loads(data)
    assert again.shape == inputs.shape and again.name == inputs.name
    np.testing.assert_array_equal(again[:], images)


def test_subset_of_image_files_stays_lazy(tmp_path):
    root = tmp_path / "images"
    images, labels = _expected(_write_folder(root, "train", CLASSES))
    dataset = image_folder.load(str(root), "train")
    part = datasets.subset(dataset, np.asarray([4, 0, 2]))
    assert isinstance(part.inputs, ImageFiles) and part.inputs.shape == (3, 6, 5, 3)
    assert part.inputs.paths == tuple(dataset.inputs.paths[i] for i in (4, 0, 2))
    np.testing.assert_array_equal(part.inputs[:], images[[4, 0, 2]])
    np.testing.assert_array_equal(part.labels, labels[[4, 0, 2]])
    assert (part.mean, part.std, part.num_classes) == (dataset.mean, dataset.std, 3)


def _cache_entries(split):
    return sorted(n for n in os.listdir(image_folder.cache_dir()) if n.startswith(f"{split}-"))


def test_image_folder_statistics_are_computed_once_per_version_of_the_files(tmp_path, monkeypatch):
    root = tmp_path / "images"
    images, _ = _expected(_write_folder(root, "train", CLASSES))
    _write_folder(root, "test", {"ant": 1, "moth": 1, "zebra": 1}, seed=1)
    legacy = os.path.join(image_folder.cache_dir(), image_folder._cache_path(str(root), "train", "0")[1] + "0.npz")
    os.makedirs(os.path.dirname(legacy))
    open(legacy, "wb").close()  # an older version's decoded arrays of this root
    dataset = image_folder.load(str(root), "train")
    pixels = images.reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(dataset.mean, pixels.mean(0), rtol=1e-12)
    np.testing.assert_allclose(dataset.std, pixels.std(0), rtol=1e-9)
    first = _cache_entries("train")
    assert len(first) == 1 and first[0].endswith(".json") and not os.path.exists(legacy)
    assert os.path.getsize(os.path.join(image_folder.cache_dir(), first[0])) < 2000

    def no_decoding(path, *args):
        raise AssertionError(f"decoded {path} although its statistics are cached")

    with monkeypatch.context() as patch:
        patch.setattr(image_folder, "read_example", no_decoding)
        again = image_folder.load(str(root), "train")
        test_set = image_folder.load(str(root), "test")
    assert (again.mean, again.std, again.inputs.shape) == (dataset.mean, dataset.std, dataset.inputs.shape)
    assert (test_set.mean, test_set.std) == (dataset.mean, dataset.std)
    assert _cache_entries("test") == []  # the test split is never scanned when there is a train split

    # Editing (touching) an image, or adding one, changes the fingerprint: a new entry replaces the old.
    touched = root / "train" / "ant" / "000.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    image_folder.load(str(root), "train")
    second = _cache_entries("train")
    assert len(second) == 1 and second != first
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(root / "train" / "moth" / "999.png")
    grown = image_folder.load(str(root), "train")
    assert len(grown) == len(dataset) + 1 and grown.mean != dataset.mean
    third = _cache_entries("train")
    assert len(third) == 1 and third != second


def test_image_folder_without_a_train_split_and_with_a_damaged_cache_entry(tmp_path):
    root = tmp_path / "images"
    images, _ = _expected(_write_folder(root, "test", {"a": 2, "b": 1}, mode="L"))
    test_set = image_folder.load(str(root), "test")  # no train split: this split gives the size
    assert (test_set.mean, test_set.std, test_set.inputs.shape) == (None, None, (3, 6, 5, 1))
    np.testing.assert_array_equal(test_set.inputs[:], images)
    (entry,) = _cache_entries("test")
    pathlib.Path(image_folder.cache_dir(), entry).write_text("{not json")
    with pytest.warns(UserWarning, match=f"ignoring unreadable image_folder cache .*{entry}.*reading the images"):
        again = image_folder.load(str(root), "test")
    assert again.inputs.shape == (3, 6, 5, 1)
    assert json.loads(pathlib.Path(image_folder.cache_dir(), entry).read_text())["channels"] == 1  # rewritten


def test_image_folder_works_with_an_unwritable_cache(tmp_path, monkeypatch):
    root = tmp_path / "images"
    _write_folder(root, "train", {"a": 1, "b": 1})
    (tmp_path / "not_a_folder").write_text("")
    monkeypatch.setenv(image_folder.CACHE_ENV, str(tmp_path / "not_a_folder"))
    with pytest.warns(UserWarning, match="could not write the image_folder cache .*set SAFJAX_CACHE_DIR") as caught:
        dataset = image_folder.load(str(root), "train")
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert dataset.inputs.shape == (2, 6, 5, 3)


def test_image_folder_grayscale_and_mixed(tmp_path):
    gray = _write_folder(tmp_path / "gray", "train", {"a": 2, "b": 1}, mode="L")
    dataset = image_folder.load(str(tmp_path / "gray"), "train")
    assert dataset.inputs.shape == (3, 6, 5, 1) and len(dataset.mean) == 1
    np.testing.assert_array_equal(dataset.inputs[:], _expected(gray)[0])

    mixed_root = tmp_path / "mixed"
    rgb = _write_folder(mixed_root, "train", {"a": 1}, mode="RGB")
    gray = _write_folder(mixed_root, "train", {"b": 1}, mode="L", seed=3)
    dataset = image_folder.load(str(mixed_root), "train")
    assert dataset.inputs.shape == (2, 6, 5, 3)
    np.testing.assert_array_equal(dataset.inputs[0], rgb["a"][0])
    np.testing.assert_array_equal(dataset.inputs[1], np.repeat(gray["b"][0], 3, axis=2))
    both = np.stack([rgb["a"][0], np.repeat(gray["b"][0], 3, axis=2)]).reshape(-1, 3) / 255
    np.testing.assert_allclose(dataset.mean, both.mean(0), rtol=1e-12)  # grayscale counted as replicated

    # The train split decides the channels of both splits.
    _write_folder(mixed_root, "test", {"a": 1, "b": 1}, mode="L", seed=4)
    assert image_folder.load(str(mixed_root), "test").inputs.shape == (2, 6, 5, 3)
    _write_folder(tmp_path / "gray", "test", {"a": 1, "b": 1}, mode="RGB", seed=5)
    test_set = image_folder.load(str(tmp_path / "gray"), "test")
    assert test_set.inputs.shape == (2, 6, 5, 1)
    with Image.open(test_set.inputs.paths[0]) as image:
        np.testing.assert_array_equal(test_set.inputs[0], np.asarray(image.convert("L"))[..., None])


def _jpeg(size, seed=0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("name, content, reason", [
    ("empty.jpg", b"", "UnidentifiedImageError: cannot identify image file"),
    ("truncated.jpg", _jpeg((32, 32))[:700], "OSError: image file is truncated"),
    ("notes.jpg", b"these are notes, not a JPEG\n", "UnidentifiedImageError: cannot identify image file"),
])
def test_an_unreadable_file_is_refused_in_one_line_when_read(tmp_path, name, content, reason, decode_threads):
    root = tmp_path / "images"
    _write_folder(root, "train", {"a": 1, "b": 1}, size=(32, 32))
    _write_folder(root, "test", {"a": 1, "b": 1}, size=(32, 32))
    bad = root / "test" / "a" / name
    bad.write_bytes(content)
    test_set = image_folder.load(str(root), "test")  # listing only: nothing of the test split is decoded
    assert test_set.inputs.paths[1] == str(bad)
    test_set.inputs[[0, 2]]
    for index in (1, [0, 1], slice(None)):
        with pytest.raises(ValueError) as raised:
            test_set.inputs[index]
        message = str(raised.value)
        assert re.fullmatch(rf"cannot read example 1 of test split of image_folder:{re.escape(str(root))} "
                            rf"\({re.escape(str(bad))}\): {reason}[^\n]*", message), message


def test_a_16_bit_image_is_refused_naming_it(tmp_path):
    root = tmp_path / "images"
    _write_folder(root, "train", {"a": 1, "b": 1})
    deep = root / "train" / "b" / "deep.png"
    Image.fromarray(np.zeros((6, 5), np.uint16)).save(deep)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(deep))} is a I;16 \(16-bit or float\) image: .*convert"):
        image_folder.load(str(root), "train")


def test_a_test_image_of_another_size_is_refused_naming_it(tmp_path, decode_threads):
    root = tmp_path / "images"
    _write_folder(root, "train", {"a": 1, "b": 1})
    _write_folder(root, "test", {"a": 1, "b": 1})
    odd = root / "test" / "b" / "001.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(odd)
    test_set = image_folder.load(str(root), "test")
    test_set.inputs[:2]
    with pytest.raises(ValueError) as raised:
        test_set.inputs[2]
    message = str(raised.value)
    first = root / "train" / "a" / "000.png"
    assert message.startswith(f"{odd} (example 2 of test split of image_folder:{root}) is 4×4 (H×W) but the "
                              f"first train image {first} is 6×5: ") and "resize" in message and "\n" not in message
    with pytest.raises(ValueError, match=re.escape(str(odd))):
        test_set.inputs[:]


def test_image_folder_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder.load(str(tmp_path / "missing"), "train")

    root = tmp_path / "root"
    _write_folder(root, "train", {"a": 1})
    with pytest.raises(FileNotFoundError, match=r"no 'test' split.*splits found: train"):
        image_folder.load(str(root), "test")

    (root / "train" / "empty").mkdir()
    (root / "train" / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match=r"class folder .*empty has no images"):
        image_folder.load(str(root), "train")

    (tmp_path / "bare" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="has no class folders"):
        image_folder.load(str(tmp_path / "bare"), "train")

    sizes = tmp_path / "sizes"
    _write_folder(sizes, "train", {"a": 1}, size=(6, 5))
    _write_folder(sizes, "train", {"b": 1}, size=(4, 4))
    with pytest.raises(ValueError, match=r"b/000.png is 4×4 \(H×W\) and .*a/000.png is 6×5.*resize"):
        image_folder.load(str(sizes), "train")

    broken = tmp_path / "broken"
    _write_folder(broken, "train", {"a": 1, "b": 1})  # two classes: one alone is refused first
    (broken / "train" / "a" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"cannot read example 1 of train split .*a/bad.jpg\): UnidentifiedImage"):
        image_folder.load(str(broken), "train")

    classes = tmp_path / "classes"
    _write_folder(classes, "train", {"a": 1, "b": 1})
    _write_folder(classes, "test", {"a": 1, "c": 1})
    with pytest.raises(ValueError, match="same class folders"):
        image_folder.load(str(classes), "test")


def test_image_folder_archive_root_says_how_to_extract(tmp_path):
    _write_folder(tmp_path / "pics", "train", {"a": 1})
    archive = tmp_path / "pics.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "pics", arcname="pics")
    with pytest.raises(ValueError) as raised:
        image_folder.load(str(archive), "train")
    message = str(raised.value)
    assert f"tar xf {archive} -C {tmp_path}" in message
    assert f"image_folder:{tmp_path / 'pics'}" in message


# ----------------------------------------------------------------------------- augmentation


def _pattern(batch=5, height=8, width=7, channels=3, dtype=np.uint8):
    """Distinct nonzero values everywhere, so shifts and zeroed pixels are visible."""
    values = 1 + np.arange(batch * height * width * channels) % 250
    return values.reshape(batch, height, width, channels).astype(dtype)


def test_crop_moves_content_by_the_sampled_offset():
    images = _pattern()
    np.testing.assert_array_equal(augment.crop_at(images, np.full((5, 2), 4), 4), images)
    shifted = augment.crop_at(images, np.zeros((5, 2), int), 4)  # content moves 4 down, 4 right
    np.testing.assert_array_equal(shifted[:, 4:, 4:], images[:, :-4, :-4])
    assert not shifted[:, :4].any() and not shifted[:, :, :4].any()

    cropped = augment.random_crop(images, np.random.default_rng(7), padding=3)
    offsets = augment.sample_crop_offsets(np.random.default_rng(7), 5, 3)
    assert offsets.min() >= 0 and offsets.max() <= 6
    padded = np.pad(images, ((0, 0), (3, 3), (3, 3), (0, 0)))
    for b, (dy, dx) in enumerate(offsets):
        np.testing.assert_array_equal(cropped[b], padded[b, dy:dy + 8, dx:dx + 7])


def test_flip_twice_is_identity():
    images = _pattern(batch=64)
    once = augment.horizontal_flip(images, np.random.default_rng(3))
    twice = augment.horizontal_flip(once, np.random.default_rng(3))
    np.testing.assert_array_equal(twice, images)
    flips = augment.sample_flips(np.random.default_rng(3), 64)
    assert 0 < flips.sum() < 64
    np.testing.assert_array_equal(once[flips], images[flips][:, :, ::-1])
    np.testing.assert_array_equal(once[~flips], images[~flips])


def test_cutout_zeroes_exactly_the_clipped_square():
    images = _pattern(batch=3, height=32, width=32)
    centres = np.array([[16, 16], [0, 0], [31, 30]])
    out = augment.cutout_at(images, centres, length=16)
    zeroed = (out == 0).all(-1)
    assert zeroed[0, 8:24, 8:24].all() and zeroed[0].sum() == 256
    assert zeroed[1, :8, :8].all() and zeroed[1].sum() == 64
    assert zeroed[2, 23:, 22:].all() and zeroed[2].sum() == 9 * 10
    np.testing.assert_array_equal(out[~zeroed], images[~zeroed])

    out = augment.cutout(images, np.random.default_rng(5), length=5)
    centres = augment.sample_cutout_centres(np.random.default_rng(5), 3, 32, 32)
    for b, (cy, cx) in enumerate(centres):
        expected = images[b].copy()
        expected[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3] = 0
        np.testing.assert_array_equal(out[b], expected)


@pytest.mark.parametrize("function", [augment.random_crop, augment.horizontal_flip, augment.cutout,
                                      augment.standard])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_augmentations_are_deterministic_and_keep_shape_and_dtype(function, dtype):
    images = _pattern(batch=16, height=32, width=32, dtype=dtype)
    first = function(images, np.random.default_rng(0))
    chex.assert_shape(first, images.shape)
    chex.assert_type(first, dtype)
    np.testing.assert_array_equal(function(images, np.random.default_rng(0)), first)
    assert not np.array_equal(function(images, np.random.default_rng(1)), first)


def test_standard_is_crop_then_flip_then_cutout():
    images = _pattern(batch=16, height=32, width=32)
    rng = np.random.default_rng(11)
    composed = augment.cutout(augment.horizontal_flip(augment.random_crop(images, rng), rng), rng)
    np.testing.assert_array_equal(augment.standard(images, np.random.default_rng(11)), composed)


# ----------------------------------------------------------------------------- input pipeline


def _images_dataset(num_examples=50, size=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)):
    rng = np.random.default_rng(0)
    return Dataset("toy", rng.integers(0, 256, (num_examples, size, size, 3), dtype=np.uint8),
                   rng.integers(0, 10, num_examples).astype(np.int32), 10, mean=mean, std=std, augment=True)


def test_epoch_order_is_the_trainer_rule():
    for seed, epoch in [(0, 0), (3, 7)]:
        np.testing.assert_array_equal(input_pipeline.epoch_order(seed, epoch, 101),
                                      np.random.default_rng((seed, epoch)).permutation(101))


def test_process_rows():
    assert input_pipeline.process_rows(8, 1, 4) == slice(2, 4)
    assert input_pipeline.process_rows(8, 0, 1) == slice(0, 8)
    with pytest.raises(ValueError, match="multiple of the 3 processes"):
        input_pipeline.process_rows(8, 0, 3)
    with pytest.raises(ValueError, match="process_index"):
        input_pipeline.process_rows(8, 4, 4)


def test_make_batch_scales_and_normalises():
    dataset = _images_dataset()
    indices = np.array([4, 0, 9])
    inputs, labels = input_pipeline.make_batch(dataset, indices, augment=False, seed=0, epoch=0, step=0)
    chex.assert_type([inputs, labels], [np.float32, np.int32])
    expected = (dataset.inputs[indices] / 255 - np.array(dataset.mean)) / np.array(dataset.std)
    np.testing.assert_allclose(inputs, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(labels, dataset.labels[indices])

    augmented, _ = input_pipeline.make_batch(dataset, indices, augment=True, seed=0, epoch=0, step=0)
    raw = augment.standard(dataset.inputs[indices], np.random.default_rng((0, 0, 0)))
    np.testing.assert_allclose(augmented, (raw / 255 - np.array(dataset.mean)) / np.array(dataset.std),
                               rtol=1e-5, atol=1e-5)


def test_make_batch_passes_float_and_event_data_through():
    rng = np.random.default_rng(0)
    floats = Dataset("floats", rng.random((6, 8, 8, 1), dtype=np.float32), np.arange(6, dtype=np.int32), 6)
    inputs, _ = input_pipeline.make_batch(floats, np.array([5, 1]), augment=True, seed=0, epoch=0, step=0)
    np.testing.assert_array_equal(inputs, floats.inputs[[5, 1]])

    events = Dataset("events", rng.random((6, 3, 8, 8, 2), dtype=np.float32), np.arange(6, dtype=np.int32), 6,
                     temporal=True, augment=True)
    inputs, labels = input_pipeline.make_batch(events, np.array([2, 3]), augment=True, seed=0, epoch=0, step=0)
    chex.assert_shape(inputs, (2, 3, 8, 8, 2))
    np.testing.assert_array_equal(inputs, events.inputs[[2, 3]])
    np.testing.assert_array_equal(labels, [2, 3])


def _collect(iterator):
    return [(step, epoch, index, inputs.copy(), labels.copy()) for step, epoch, index, inputs, labels in iterator]


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x[:3] == y[:3]
        np.testing.assert_array_equal(x[3], y[3])
        np.testing.assert_array_equal(x[4], y[4])


def test_minibatches_resume_mid_epoch():
    dataset = _images_dataset()  # 50 examples, batch 8: 6 minibatches per epoch
    everything = _collect(input_pipeline.minibatches(dataset, batch_size=8, seed=3, first_step=0, num_steps=15,
                                                     augment=True))
    assert [b[:3] for b in everything[5:8]] == [(5, 0, 5), (6, 1, 0), (7, 1, 1)]
    order = input_pipeline.epoch_order(3, 1, 50)
    np.testing.assert_array_equal(everything[7][4], dataset.labels[order[8:16]])
    resumed = _collect(input_pipeline.minibatches(dataset, batch_size=8, seed=3, first_step=9, num_steps=6,
                                                  augment=True))
    _assert_same_batches(resumed, everything[9:])
    other_seed = _collect(input_pipeline.minibatches(dataset, batch_size=8, seed=4, first_step=9, num_steps=1,
                                                     augment=True))
    assert not np.array_equal(other_seed[0][3], everything[9][3])


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_rows_together_make_the_global_batch(process_count):
    dataset = _images_dataset()
    kwargs = {"batch_size": 8, "seed": 1, "first_step": 4, "num_steps": 4, "augment": True}
    whole = _collect(input_pipeline.minibatches(dataset, **kwargs))
    parts = [_collect(input_pipeline.minibatches(dataset, rows=input_pipeline.process_rows(8, p, process_count),
                                                 **kwargs)) for p in range(process_count)]
    for step, batch in enumerate(whole):
        chex.assert_shape(parts[0][step][3], (8 // process_count, 32, 32, 3))
        np.testing.assert_array_equal(np.concatenate([part[step][3] for part in parts]), batch[3])
        np.testing.assert_array_equal(np.concatenate([part[step][4] for part in parts]), batch[4])


def test_eval_batches_cover_every_example_once():
    dataset = _images_dataset(num_examples=21)
    batches = list(input_pipeline.eval_batches(dataset, 8))
    assert [num_valid for _, _, num_valid in batches] == [8, 8, 5]
    for inputs, labels, _ in batches:
        chex.assert_shape([inputs, labels], [(8, 32, 32, 3), (8,)])
    seen = np.concatenate([labels[:num_valid] for _, labels, num_valid in batches])
    np.testing.assert_array_equal(seen, dataset.labels)
    first, _ = input_pipeline.make_batch(dataset, np.arange(8), augment=False, seed=0, epoch=0, step=0)
    np.testing.assert_array_equal(batches[0][0], first)

    halves = [list(input_pipeline.eval_batches(dataset, 8, rows=input_pipeline.process_rows(8, p, 2)))
              for p in range(2)]
    assert [n for _, _, n in halves[0]] == [4, 4, 4] and [n for _, _, n in halves[1]] == [4, 4, 1]


# ----------------------------------------------------------------------------- the real CIFAR-10


@pytest.mark.slow
def test_real_cifar10_jpeg_subset(tmp_path):
    per_class = 20
    root = pathlib.Path(real_cifar.extract_subset(tmp_path, per_class, per_class))
    for split in ("train", "test"):
        dataset = image_folder.load(str(root), split)
        assert sorted(os.listdir(root / split)) == list(real_cifar.CLASSES)
        chex.assert_shape(dataset.inputs, (10 * per_class, 32, 32, 3))
        np.testing.assert_array_equal(np.bincount(dataset.labels), [per_class] * 10)
        assert dataset.num_classes == 10
        np.testing.assert_allclose(dataset.mean, tfds_images.CIFAR10_MEAN, atol=0.05)
        np.testing.assert_allclose(dataset.std, tfds_images.CIFAR10_STD, atol=0.05)
