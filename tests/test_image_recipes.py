"""The ImageNet recipe (`safjax.image_recipes`, ``--image_size``): torchvision's random-resized crop
and flip, the resize + centre crop of evaluation, per-example randomness that no batching changes,
image folders of mixed sizes end to end, and ``--dataset=imagenet2012`` from TFDS ArrayRecord files
written locally (no network, no TensorFlow). References are computed here with Pillow directly."""

from __future__ import annotations

import io
import math
import pickle

import os

import numpy as np
import pytest
from PIL import Image

from safjax import data_loader, datasets, image_recipes, input_pipeline
from safjax.datasets import image_folder
from safjax.datasets.image_files import ImageFiles
from safjax.experiment_config import ExperimentConfig

SEED, SIZE = 5, 16
SIZES = ((20, 30), (40, 24), (33, 33))  # (H, W) of the mixed-size folder's images, in turn


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(image_folder.CACHE_ENV, str(tmp_path / "cache"))


def _gradient(height, width, channels=3):
    """A synthetic image whose every pixel differs from its neighbours (so crops and flips show)."""
    rows, cols = np.mgrid[:height, :width]
    planes = [(7 * rows + 3 * cols) % 256, (5 * cols + rows * rows) % 256, (rows * cols) % 256][:channels]
    return np.stack(planes, -1).astype(np.uint8)


def _mixed_folder(root, per_class=6, splits=("train", "test")):
    """2 classes of PNGs whose sizes cycle through `SIZES`; class 1 brighter."""
    for split in splits:
        for label in range(2):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                height, width = SIZES[i % len(SIZES)]
                image = (_gradient(height, width) // 2 + 120 * label).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{i:02d}.png")
    return str(root)


# ----------------------------------------------------------------------------- the crop rule

def test_resized_crop_draws_lie_in_the_scale_and_ratio_ranges_and_flip_half_the_time():
    height, width = 200, 300
    crops = [image_recipes.sample_resized_crop(np.random.default_rng((1, 0, key)), height, width)
             for key in range(1000)]
    for crop in crops:
        top, left, h, w = crop[:4]
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
        # Sides are the rounded sqrt(A·r), sqrt(A/r): within half a pixel of the drawn area and ratio.
        assert (h + 0.5) * (w + 0.5) >= 0.08 * height * width and (h - 0.5) * (w - 0.5) <= height * width
        assert (w + 0.5) / (h - 0.5) >= 3 / 4 and (w - 0.5) / (h + 0.5) <= 4 / 3
    fractions = np.array([c.height * c.width for c in crops]) / (height * width)
    # Both ends of the range are drawn (on a 3:2 image a crop of ratio ≤ 4/3 covers at most 8/9 of it).
    assert fractions.min() < 0.1 and fractions.max() > 0.8
    flips = sum(crop.flip for crop in crops)
    assert abs(flips - 500) <= 4 * math.sqrt(1000 * 0.25)  # binomial(1000, 0.5): 4 standard deviations


@pytest.mark.parametrize("height, width, box", [
    (10, 1000, (0, 493, 10, 13)),  # wider than 4/3: full height, width round(10·4/3), centred
    (1000, 10, (493, 0, 13, 10)),  # taller than 3/4: full width, height round(10/(3/4)), centred
])
def test_resized_crop_falls_back_to_the_centre_crop_clamped_to_the_ratio(height, width, box):
    # No crop of area ≥ 8 % and ratio in [3/4, 4/3] fits these images, so all 10 tries fail.
    for key in range(20):
        assert tuple(image_recipes.sample_resized_crop(np.random.default_rng(key), height, width)[:4]) == box


def test_train_view_is_the_crop_resized_bilinear_then_flipped():
    image = _gradient(37, 50)
    seen_flip = set()
    for key in range(12):
        crop = image_recipes.sample_resized_crop(np.random.default_rng((SEED, 2, key)), 37, 50)
        view = image_recipes.train_view(image, np.random.default_rng((SEED, 2, key)), SIZE)
        reference = Image.fromarray(image).crop((crop.left, crop.top, crop.left + crop.width, crop.top + crop.height))
        reference = reference.resize((SIZE, SIZE), Image.BILINEAR)
        if crop.flip:
            reference = reference.transpose(Image.FLIP_LEFT_RIGHT)
        np.testing.assert_array_equal(view, np.asarray(reference))
        seen_flip.add(crop.flip)
    assert seen_flip == {False, True}


@pytest.mark.parametrize("height, width, resized, corner", [
    # S = 16: short side round(16 / 0.875) = 18, long side int(18·long/short), offsets round((n - 16) / 2).
    (20, 30, (18, 27), (1, 6)),
    (40, 24, (30, 18), (7, 1)),
    (33, 33, (18, 18), (1, 1)),
])
def test_eval_view_resizes_the_short_side_then_crops_the_centre(height, width, resized, corner):
    image = _gradient(height, width)
    reference = np.asarray(Image.fromarray(image).resize(resized[::-1], Image.BILINEAR))
    top, left = corner
    np.testing.assert_array_equal(image_recipes.eval_view(image, SIZE), reference[top:top + SIZE, left:left + SIZE])
    gray = _gradient(height, width, 1)
    reference = np.asarray(Image.fromarray(gray[..., 0]).resize(resized[::-1], Image.BILINEAR))
    np.testing.assert_array_equal(image_recipes.eval_view(gray, SIZE)[..., 0], reference[top:top + SIZE, left:left + SIZE])


# ----------------------------------------------------------------------------- per-example randomness

@pytest.fixture
def mixed(tmp_path):
    """The train split (12 images) of a mixed-size folder at S = 16."""
    return image_folder.load(_mixed_folder(tmp_path / "mixed"), "train", image_size=SIZE)


def _expected_row(dataset, key, epoch, augment=True):
    image = dataset.inputs.read(int(key))
    view = (image_recipes.train_view(image, np.random.default_rng((SEED, epoch, int(key))), SIZE) if augment
            else image_recipes.eval_view(image, SIZE))
    return (view / 255.0 - np.asarray(dataset.mean)) / np.asarray(dataset.std)


def test_an_example_s_view_depends_on_seed_epoch_and_its_index_only(mixed):
    assert mixed.image_size == SIZE and mixed.input_shape == (SIZE, SIZE, 3) and len(mixed) == 12
    for batch_size in (3, 5):  # other batch sizes: other positions, steps and epochs of each example
        per_epoch = len(mixed) // batch_size
        for step, epoch, index, inputs, labels in input_pipeline.minibatches(
                mixed, batch_size=batch_size, seed=SEED, first_step=0, num_steps=2 * per_epoch + 1, augment=True):
            keys = input_pipeline.epoch_order(SEED, epoch, len(mixed))[index * batch_size:(index + 1) * batch_size]
            assert inputs.shape == (batch_size, SIZE, SIZE, 3) and inputs.dtype == np.float32
            np.testing.assert_array_equal(labels, mixed.labels[keys])
            for row, key in zip(inputs, keys):
                np.testing.assert_allclose(row, _expected_row(mixed, key, epoch), rtol=1e-5, atol=1e-5)
    # Evaluation: the centre view, whatever the batch.
    inputs, labels, valid = next(input_pipeline.eval_batches(mixed, 5))
    assert valid == 5
    for i in range(5):
        np.testing.assert_allclose(inputs[i], _expected_row(mixed, i, 0, augment=False), rtol=1e-5, atol=1e-5)


def test_rows_of_two_processes_and_the_data_loader_give_the_same_views(mixed):
    indices = input_pipeline.epoch_order(SEED, 1, len(mixed))[:6]
    whole = input_pipeline.make_batch(mixed, indices, augment=True, seed=SEED, epoch=1, step=9)
    parts = [input_pipeline.make_batch(mixed, indices, augment=True, seed=SEED, epoch=1, step=9,
                                       rows=input_pipeline.process_rows(6, p, 2)) for p in range(2)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[0])
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole[1])
    rule = list(input_pipeline.minibatches(mixed, batch_size=4, seed=SEED, first_step=0, num_steps=6, augment=True))
    batches = data_loader.train_batches(mixed, batch_size=4, seed=SEED, first_step=0, total_steps=6, augment=True,
                                        workers=0)
    try:
        got = list(batches)
    finally:
        batches.close()
    assert [g[:3] for g in got] == [r[:3] for r in rule]
    for g, r in zip(got, rule):
        np.testing.assert_array_equal(g[3], r[3])


@pytest.mark.slow
def test_a_worker_process_gives_the_same_views(mixed):
    rule = list(input_pipeline.minibatches(mixed, batch_size=4, seed=SEED, first_step=0, num_steps=6, augment=True))
    batches = data_loader.train_batches(mixed, batch_size=4, seed=SEED, first_step=0, total_steps=6, augment=True,
                                        workers=1)
    try:
        got = [tuple(np.array(x) if isinstance(x, np.ndarray) else x for x in b) for b in batches]
    finally:
        batches.close()
    assert [g[:3] for g in got] == [r[:3] for r in rule]
    for g, r in zip(got, rule):
        np.testing.assert_array_equal(g[3], r[3])


# ----------------------------------------------------------------------------- image folders of mixed sizes

def test_a_mixed_size_folder_loads_without_decoding_as_image_files_of_any_size(tmp_path):
    root = _mixed_folder(tmp_path / "mixed")
    (tmp_path / "mixed" / "train" / "class0" / "zz.png").write_text("not an image")  # not read at load
    train = image_folder.load(root, "train", image_size=SIZE)
    assert (train.mean, train.std) == (image_folder.IMAGENET_MEAN, image_folder.IMAGENET_STD)
    assert train.augment and train.inputs.shape == (13, SIZE, SIZE, 3) and train.num_classes == 2
    assert not (tmp_path / "cache" / "image_folder").exists()  # no statistics pass
    assert [train.inputs.read(i).shape[:2] for i in range(3)] == list(SIZES)
    with pytest.raises(TypeError, match=r"varying sizes: read one with files.read\(i\)"):
        train.inputs[[0, 1]]
    with pytest.raises(ValueError, match=r"^cannot read example 6 of train split of image_folder:.*zz\.png"):
        train.inputs.read(6)
    subset = datasets.subset(train, np.array([4, 0]))
    assert isinstance(subset.inputs, ImageFiles) and subset.image_size == SIZE
    np.testing.assert_array_equal(subset.inputs.read(1), train.inputs.read(0))
    again = pickle.loads(pickle.dumps(train.inputs))
    assert len(pickle.dumps(train.inputs)) < 4000 and again.shape == train.inputs.shape
    np.testing.assert_array_equal(again.read(2), train.inputs.read(2))
    assert datasets.load(f"image_folder:{root}", "test", image_size=SIZE).inputs.shape == (12, SIZE, SIZE, 3)
    # image_size 0: today's rule, every image one size (checked by the statistics pass).
    with pytest.raises(ValueError, match="all images must have one size"):
        datasets.load(f"image_folder:{root}", "train")
    with pytest.raises(ValueError, match=r"^--image_size=-1 is invalid"):
        ExperimentConfig(image_size=-1).validate()


def test_a_mixed_size_folder_trains_end_to_end_and_a_bad_test_image_fails_in_one_line(tmp_path):
    from safjax import trainer

    root = _mixed_folder(tmp_path / "mixed", per_class=6)
    config = ExperimentConfig(dataset=f"image_folder:{root}", model="digits_mlp", image_size=SIZE, epochs=1,
                              batch_size=4, eval_batch_size=8, num_devices=1, data_workers=0, log_every=100)
    results = trainer.train_and_evaluate(config)
    assert results["image_size"] == SIZE and 0.0 <= results["test_accuracy"] <= 1.0
    assert results["epochs_completed"] == 1 and np.isfinite(results["train_loss_history"]).all()
    bad = tmp_path / "mixed" / "test" / "class1" / "03.png"
    bad.write_bytes(b"")
    with pytest.raises(ValueError) as raised:
        trainer.train_and_evaluate(config)
    message = str(raised.value)
    assert str(bad) in message and "cannot read example 9 of test split" in message and "\n" not in message


# ----------------------------------------------------------------------------- imagenet2012 from TFDS files

def _jpeg(height, width, shade):
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), shade, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


# Example k of a split: a (16 + k)×(24 + k) JPEG; label 3·k in train, 500 + k in validation.
_SPLIT_SIZES = {"train": 11, "validation": 5}


def _label(split, k):
    return 3 * k if split == "train" else 500 + k


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
    """A TFDS data_dir with a tiny but real ArrayRecord imagenet2012 (train: 11, validation: 5),
    written by the real builder with only its generator replaced (no archives, no TensorFlow)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from etils import epath
    from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder as imagenet

    data_dir = tmp_path_factory.mktemp("tfds")

    def examples(split):
        for k in range(_SPLIT_SIZES[split]):
            yield f"{split}{k}", {"image": _jpeg(16 + k, 24 + k, 40 + 10 * k), "label": _label(split, k),
                                  "file_name": f"{split}_{k}.JPEG"}

    class LocalImagenet(imagenet.Builder, skip_registration=True):
        name = "imagenet2012"
        pkg_dir_path = epath.Path(imagenet.__file__).parent  # its metadata (README, citation)

        def _split_generators(self, dl_manager):
            return {split: examples(split) for split in _SPLIT_SIZES}

    config = tfds.download.DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP)
    LocalImagenet(data_dir=str(data_dir), file_format="array_record").download_and_prepare(download_config=config)
    return str(data_dir)


def test_imagenet2012_streams_tfds_records_with_the_split_mapping(imagenet_dir, monkeypatch):
    from safjax.datasets import tfds_stream

    for split, tfds_split in (("train", "train"), ("test", "validation")):
        dataset = datasets.load("imagenet2012", split, data_dir=imagenet_dir, image_size=32)
        count = _SPLIT_SIZES[tfds_split]
        assert dataset.inputs.shape == (count, 32, 32, 3) and dataset.input_shape == (32, 32, 3)
        assert dataset.num_classes == 1000 and dataset.labels.dtype == np.int32 and dataset.image_size == 32
        assert (dataset.mean, dataset.std) == (image_folder.IMAGENET_MEAN, image_folder.IMAGENET_STD)
        # TFDS shuffles records when writing: identify each by its size.
        ks = []
        for i in range(count):
            image = dataset.inputs.read(i)
            k = image.shape[0] - 16
            assert image.shape == (16 + k, 24 + k, 3) and image.dtype == np.uint8
            assert abs(int(image.mean()) - (40 + 10 * k)) <= 2
            assert dataset.labels[i] == _label(tfds_split, k)
            ks.append(k)
        assert sorted(ks) == list(range(count))
        inputs, labels = input_pipeline.make_batch(dataset, np.arange(count), augment=split == "train", seed=SEED,
                                                   epoch=0, step=0)
        assert inputs.shape == (count, 32, 32, 3) and np.isfinite(inputs).all()
        np.testing.assert_array_equal(labels, dataset.labels)
    # Pickled, it is a few hundred bytes and opens its own source; a subset stays lazy.
    blob = pickle.dumps(dataset.inputs)
    assert len(blob) < 1000
    np.testing.assert_array_equal(pickle.loads(blob).read(3), dataset.inputs.read(3))
    subset = datasets.subset(dataset, np.array([3, 1]))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(subset.inputs)).read(0), dataset.inputs.read(3))
    with pytest.raises(TypeError, match="varying sizes"):
        dataset.inputs[0]
    # The labels come from the cache the first load wrote; image_size 0 is 224.
    monkeypatch.setattr(tfds_stream, "_read_labels", lambda *args: pytest.fail("labels read again"))
    again = datasets.load("imagenet2012", "train", data_dir=imagenet_dir)
    assert again.image_size == 224 and again.inputs.shape == (11, 224, 224, 3)
    with pytest.raises(ValueError, match="`split` must be one of"):
        datasets.load("imagenet2012", "validation", data_dir=imagenet_dir)


def test_imagenet2012_absent_says_how_to_build_it(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as raised:
        datasets.load("imagenet2012", "train", data_dir=str(empty))
    message = str(raised.value)
    assert "\n" not in message and str(empty / "imagenet2012") in message
    assert f"tfds build imagenet2012 --manual_dir=MANUAL --data_dir={empty} --file_format=array_record" in message
    assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert list(empty.iterdir()) == []  # nothing downloaded or created


@pytest.mark.slow  # one run of the binary with the ResNet-34 at width 1/16 (~1 min)
def test_the_imagenet_preset_trains_a_generated_imagenet_format_folder_end_to_end(tmp_path):
    """`--config=imagenet_resnet34_online` on an ImageNet-format folder (JPEGs of several sizes):
    its pipeline (random-resized crop / centre crop, ImageNet statistics, a data worker) and model
    (sWS ResNet-34, 7×7 stride-2 stem at 128² and more), shrunk to CPU scale by flags."""
    import json
    import subprocess
    import sys

    from experiments import synthetic_jpegs

    root = tmp_path / "imagenet"
    for split, count in (("train", 16), ("test", 8)):
        for size, seed in ((150, 0), (180, 1)):
            synthetic_jpegs.write_jpegs(str(root), count // 2, size, split=split, classes=4, seed=seed,
                                        prefix=f"{size}-")
    run = subprocess.run([sys.executable, "-m", "experiments.train", "--config=imagenet_resnet34_online",
                          f"--dataset=image_folder:{root}", "--image_size=128", "--width=0.0625", "--time_steps=1",
                          "--batch_size=4", "--eval_batch_size=4", "--epochs=1", "--data_workers=1",
                          f"--workdir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "SAFJAX_CACHE_DIR": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["model"] == "resnet34" and results["image_size"] == 128 and results["method"] == "saf_e"
    assert results["epochs_completed"] == 1 and np.isfinite(results["train_loss_history"]).all()
