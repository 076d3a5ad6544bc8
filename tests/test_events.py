"""Event framing, the frame cache, the embedded digits_events set and the tonic loaders (with a
fake, in-memory tonic: neither tonic nor the recorded data sets are needed)."""

import os
import sys
import types

import chex
import numpy as np
import pytest

import safjax.datasets
from safjax.datasets import digits_events, events, neuromorphic
from safjax.datasets.digits import load_digits


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """A fresh, empty cache for every test: none sees another's files, or the user's."""
    path = str(tmp_path / "safjax_cache")
    monkeypatch.setenv(events.CACHE_ENV, path)
    return path


def _random_events(rng, num, height, width, outside=0):
    """``num`` events inside a (height, width) sensor, in random time order, then ``outside`` ones."""
    x = np.concatenate([rng.integers(0, width, num), rng.integers(width, width + 5, outside)])
    y = np.concatenate([rng.integers(0, height, num), rng.integers(-3, 0, outside)])
    t = rng.integers(0, 50_000, num + outside)
    return events.make_events(t, x, y, rng.integers(0, 2, num + outside))


# --- framing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", events.MODES)
@pytest.mark.parametrize("frame_shape", [None, (12, 9), (1, 1)])
def test_frames_count_every_event_inside_the_sensor_once(mode, frame_shape):
    recording = _random_events(np.random.default_rng(0), 500, 24, 18, outside=40)
    frames = events.to_frames(recording, (24, 18), 7, mode=mode, frame_shape=frame_shape)
    chex.assert_shape(frames, (7, *(frame_shape or (24, 18)), 2))
    chex.assert_type(frames, np.float32)
    inside = recording[:500]
    assert frames.sum() == 500
    assert frames[..., 1].sum() == np.sum(inside["p"] == 1)  # channel 1 is ON
    assert frames[..., 0].sum() == np.sum(inside["p"] == 0)


def test_pixels_and_polarities_land_where_they_belong():
    recording = events.make_events([5, 6, 7, 8], x=[2, 2, 0, 4], y=[1, 1, 3, 0], p=[1, 1, 0, 0])
    frames = events.to_frames(recording, (4, 5), 1)
    expected = np.zeros((1, 4, 5, 2), np.float32)
    expected[0, 1, 2, 1] = 2  # (y, x) = (1, 2), ON twice
    expected[0, 3, 0, 0] = 1
    expected[0, 0, 4, 0] = 1
    np.testing.assert_array_equal(frames, expected)


def test_time_mode_splits_the_span_into_equal_intervals():
    t = np.array([0, 24, 25, 49, 50, 74, 75, 99, 100, 150])
    recording = events.make_events(t, np.zeros(10), np.zeros(10), np.ones(10))
    per_bin = events.to_frames(recording, (1, 1), 4, time_span=(0, 100)).sum(axis=(1, 2, 3))
    np.testing.assert_array_equal(per_bin, [2, 2, 2, 2])  # t = 100 and 150 lie outside [0, 100)
    # Default span: the recording's own [t_min, t_max + 1) = [0, 151): bins of 37.75 µs.
    per_bin = events.to_frames(recording, (1, 1), 4).sum(axis=(1, 2, 3))
    np.testing.assert_array_equal(per_bin, np.bincount(t * 4 // 151, minlength=4))


def test_count_mode_gives_equal_event_numbers_in_time_order():
    rng = np.random.default_rng(1)
    t = np.concatenate([np.zeros(7), np.arange(1, 4) * 1_000_000])  # very uneven in time
    recording = events.make_events(t, np.arange(10), np.zeros(10), np.ones(10))
    shuffled = recording[rng.permutation(10)]
    frames = events.to_frames(shuffled, (1, 10), 3, mode="count")
    np.testing.assert_array_equal(frames.sum(axis=(1, 2, 3)), [4, 3, 3])
    # time order, not array order: the three late events (x = 7, 8, 9) share the last frame
    np.testing.assert_array_equal(np.flatnonzero(frames[2, 0, :, 1]), [7, 8, 9])


def test_downsampling_scales_coordinates_by_integer_division():
    x = np.arange(128)
    recording = events.make_events(np.zeros(128), x, 127 - x, np.ones(128))
    frames = events.to_frames(recording, (128, 128), 1, frame_shape=(48, 48))[0, ..., 1]
    np.testing.assert_array_equal(frames.sum(axis=0), np.bincount(x * 48 // 128))
    assert set(frames.sum(axis=0)) == {2.0, 3.0}  # 128 / 48 = 2.67 source columns per target
    # (x, y) → (x', y') = (⌊48 x / 128⌋, ⌊48 y / 128⌋), by hand:
    for (x, y), (x_to, y_to) in {(0, 0): (0, 0), (2, 3): (0, 1), (3, 2): (1, 0),
                                 (127, 64): (47, 24), (85, 127): (31, 47)}.items():
        one = events.make_events([0], [x], [y], [0])
        frames = events.to_frames(one, (128, 128), 1, frame_shape=(48, 48))
        assert frames[0, y_to, x_to, 0] == 1 and frames.sum() == 1


def test_tonic_dtypes_frame_like_safjax_events():
    recording = _random_events(np.random.default_rng(2), 300, 16, 16)
    expected = events.to_frames(recording, (16, 16), 5)
    cifar10dvs = np.dtype([("t", np.uint64), ("x", np.uint16), ("y", np.uint16), ("p", bool)])
    dvsgesture = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
    for dtype in (cifar10dvs, dvsgesture):
        converted = np.empty(len(recording), dtype)
        for field in "txyp":
            converted[field] = recording[field]
        np.testing.assert_array_equal(events.to_frames(converted, (16, 16), 5), expected)


def test_framing_rejects_ambiguous_arguments():
    recording = _random_events(np.random.default_rng(3), 10, 4, 4)
    with pytest.raises(ValueError, match="height, width"):
        events.to_frames(recording, (4, 4, 2), 2)  # tonic's sensor_size
    with pytest.raises(ValueError, match="mode"):
        events.to_frames(recording, (4, 4), 2, mode="duration")
    empty = events.to_frames(recording[:0], (4, 4), 2, frame_shape=(2, 2))
    np.testing.assert_array_equal(empty, np.zeros((2, 2, 2, 2)))


# --- cache -----------------------------------------------------------------------------------


def test_cache_stores_once_and_keys_on_every_parameter(cache_dir):
    calls = []

    def build():
        calls.append(1)
        return {"frames": np.arange(6, dtype=np.float32).reshape(2, 3), "labels": np.array([1, 2])}

    first = events.cached("toy", {"split": "train", "time_steps": 3}, build)
    second = events.cached("toy", {"split": "train", "time_steps": 3}, build)
    assert len(calls) == 1
    for name in ("frames", "labels"):
        np.testing.assert_array_equal(first[name], second[name])
        assert first[name].dtype == second[name].dtype
    events.cached("toy", {"split": "train", "time_steps": 4}, build)
    assert len(calls) == 2
    folder = os.path.join(cache_dir, "toy")
    assert sorted(f.endswith(".npz") for f in os.listdir(folder)) == [True, True]  # no .tmp left
    path = events.cache_path("toy", {"split": "train", "time_steps": 3})
    assert path.startswith(folder) and "time_steps=3" in path
    with open(path, "wb") as f:
        f.write(b"not a zip file")
    np.testing.assert_array_equal(events.cached("toy", {"split": "train", "time_steps": 3},
                                                build)["labels"], [1, 2])
    assert len(calls) == 3  # a damaged file is rebuilt


def test_cache_dir_defaults_to_home(monkeypatch):
    monkeypatch.delenv(events.CACHE_ENV)
    assert events.cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "safjax")


# --- digits_events ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def some_digits():
    return load_digits("test")[0][:12]


def test_simulation_is_deterministic_per_seed(some_digits):
    first = digits_events.simulate_dvs(some_digits, seed=0)
    again = digits_events.simulate_dvs(some_digits, seed=0)
    other = digits_events.simulate_dvs(some_digits, seed=1)
    assert len(first) == len(again) == len(other) == 12
    for a, b in zip(first, again):
        assert a.dtype == events.EVENT_DTYPE
        np.testing.assert_array_equal(a, b)  # bit-identical, all fields
    assert any(len(a) != len(c) or not np.array_equal(a, c) for a, c in zip(first, other))


def test_simulated_recordings_look_like_n_mnist(some_digits):
    model = digits_events.SensorModel()
    for recording in digits_events.simulate_dvs(some_digits, seed=0):
        assert 1000 < len(recording) < 20_000
        assert np.all(np.diff(recording["t"]) >= 0)
        assert recording["t"].min() >= 0 and recording["t"].max() < model.duration_us
        assert recording["x"].min() >= 0 and recording["x"].max() < model.canvas
        assert recording["y"].min() >= 0 and recording["y"].max() < model.canvas
        on_fraction = np.mean(recording["p"] == 1)
        assert 0.3 < on_fraction < 0.7  # a moving digit has leading and trailing edges
        # every saccade makes events
        assert np.all(np.bincount(recording["t"] // model.saccade_us, minlength=3) > 100)


def test_load_frames_the_test_split_and_reads_the_cache_afterwards(monkeypatch):
    dataset = safjax.datasets.load("digits_events", "test")
    chex.assert_shape(dataset.inputs, (360, digits_events.DEFAULT_TIME_STEPS, 32, 32, 2))
    chex.assert_type(dataset.inputs, np.float32)
    chex.assert_type(dataset.labels, np.int32)
    assert dataset.temporal and dataset.num_classes == 10 and dataset.time_steps == 8
    np.testing.assert_array_equal(dataset.labels, load_digits("test")[1])
    assert dataset.inputs.min() == 0
    assert dataset.inputs[..., 0].sum() > 0 and dataset.inputs[..., 1].sum() > 0  # OFF and ON
    assert np.all(dataset.inputs.sum(axis=(1, 2, 3, 4)) > 1000)

    def no_simulation(*args, **kwargs):
        raise AssertionError("the cache should have been read")

    monkeypatch.setattr(digits_events, "simulate_dvs", no_simulation)
    again = digits_events.load("test")
    np.testing.assert_array_equal(again.inputs, dataset.inputs)
    with pytest.raises(AssertionError, match="cache"):  # another T is another cache file
        digits_events.load("test", time_steps=4)
    with pytest.raises(AssertionError, match="cache"):  # so is another seed
        digits_events.load("test", seed=1)


def test_train_split_has_the_digits_labels(monkeypatch):
    def silent_sensor(images, *, seed, model):  # the labels are what is checked here
        return [events.make_events([], [], [], [])] * len(images)

    monkeypatch.setattr(digits_events, "simulate_dvs", silent_sensor)
    dataset = digits_events.load("train", time_steps=1, seed=12345)
    np.testing.assert_array_equal(dataset.labels, load_digits("train")[1])
    chex.assert_shape(dataset.inputs, (1437, 1, 32, 32, 2))


# --- tonic data sets -------------------------------------------------------------------------

SPECS = {"nmnist": neuromorphic.NMNIST, "dvs_gesture": neuromorphic.DVS_GESTURE,
         "cifar10_dvs": neuromorphic.CIFAR10_DVS}
LOADERS = {"nmnist": neuromorphic.load_nmnist, "dvs_gesture": neuromorphic.load_dvs_gesture,
           "cifar10_dvs": neuromorphic.load_cifar10_dvs}


class FakeSource:
    """A tonic-like data set: ``len()``, ``[i] -> (events, label)`` and ``targets``."""

    def __init__(self, spec, per_class, seed):
        rng = np.random.default_rng(seed)
        self.targets = [c for c in range(spec.num_classes) for _ in range(per_class)]
        height, width = spec.sensor_shape
        self.recordings = [_random_events(rng, int(rng.integers(50, 200)), height, width)
                           for _ in self.targets]

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return self.recordings[index], self.targets[index]


def _fake_tonic(data_present: bool, per_class: int = 3):
    """A stand-in for the tonic module whose data sets check and 'download' as tonic's do."""

    def data_set(spec):
        def __init__(self, save_to, **kwargs):
            assert set(kwargs) == ({"train"} if spec.official_split else set())
            self.location_on_system = os.path.join(save_to, type(self).__name__)
            if not data_present:  # tonic: if not self._check_exists(): self.download()
                self.download()
            FakeSource.__init__(self, spec, per_class, seed=int(kwargs.get("train", True)))

        def download(self):
            raise AssertionError("tonic would download here")

        return type(spec.tonic_class, (FakeSource,), {"__init__": __init__, "download": download})

    module = types.ModuleType("tonic")
    module.datasets = types.SimpleNamespace(**{s.tonic_class: data_set(s) for s in SPECS.values()})
    return module


def _place_files(data_dir, spec):
    for folder in set(spec.folders):
        path = os.path.join(data_dir, spec.tonic_class, folder, "some_class")
        os.makedirs(path, exist_ok=True)
        open(os.path.join(path, "recording" + spec.extension), "w").close()


def test_frames_from_source_frames_each_recording():
    source = FakeSource(neuromorphic.NMNIST, per_class=2, seed=0)
    frames, labels = neuromorphic.frames_from_source(source, sensor_shape=(34, 34), num_frames=4,
                                                     frame_shape=(17, 17), indices=[5, 0, 19])
    chex.assert_shape(frames, (3, 4, 17, 17, 2))
    chex.assert_type(frames, np.float32)
    chex.assert_type(labels, np.int32)
    np.testing.assert_array_equal(labels, [2, 0, 9])
    for row, index in enumerate([5, 0, 19]):
        np.testing.assert_array_equal(
            frames[row], events.to_frames(source[index][0], (34, 34), 4, frame_shape=(17, 17)))
    all_frames, all_labels = neuromorphic.frames_from_source(source, sensor_shape=(34, 34), num_frames=2)
    assert all_frames.shape == (20, 2, 34, 34, 2) and len(all_labels) == 20


def test_split_per_class_is_a_seeded_90_10_partition():
    labels = np.repeat(np.arange(10), 30)[np.random.default_rng(0).permutation(300)]
    split = neuromorphic.split_per_class(labels)
    train, test = split["train"], split["test"]
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(300))
    np.testing.assert_array_equal(np.bincount(labels[train]), np.full(10, 27))
    np.testing.assert_array_equal(np.bincount(labels[test]), np.full(10, 3))
    np.testing.assert_array_equal(neuromorphic.split_per_class(labels)["test"], test)
    assert not np.array_equal(neuromorphic.split_per_class(labels, seed=1)["test"], test)


def test_cifar10_dvs_split_follows_file_names_not_listing_order():
    labels = np.repeat(np.arange(10), 20)
    names = np.array([f"class{c}/rec{i:03d}.aedat4" for i, c in enumerate(labels)])
    listed = types.SimpleNamespace(targets=labels, data=list(names))
    shuffled_order = np.random.default_rng(5).permutation(200)
    shuffled = types.SimpleNamespace(targets=labels[shuffled_order], data=list(names[shuffled_order]))
    for split in neuromorphic.SPLITS:
        chosen = names[neuromorphic.split_indices(listed, split)]
        chosen_when_shuffled = names[shuffled_order][neuromorphic.split_indices(shuffled, split)]
        np.testing.assert_array_equal(chosen_when_shuffled, chosen)
        assert list(chosen) == sorted(chosen)
    assert len(neuromorphic.split_indices(listed, "test")) == 20


@pytest.mark.parametrize("name", sorted(SPECS))
def test_without_tonic_the_error_says_how_to_install_it(name, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tonic", None)  # makes `import tonic` fail
    with pytest.raises(ImportError, match=r"pip install tonic==.*safjax\[events\]"):
        LOADERS[name]("train", data_dir=str(tmp_path))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_without_data_the_error_says_where_and_how(name, monkeypatch, tmp_path):
    spec = SPECS[name]
    monkeypatch.setitem(sys.modules, "tonic", _fake_tonic(data_present=False))
    with pytest.raises(FileNotFoundError) as error:
        LOADERS[name]("test", data_dir=str(tmp_path))
    message = str(error.value)
    assert os.path.join(str(tmp_path), spec.tonic_class) in message
    assert spec.extension in message and "never downloads" in message
    assert ("by hand" in message) == (name == "cifar10_dvs")
    # Files that satisfy safjax's quick check but not tonic's: tonic's download() is refused.
    _place_files(str(tmp_path), spec)
    with pytest.raises(FileNotFoundError, match="searched"):
        LOADERS[name]("test", data_dir=str(tmp_path))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_load_through_a_fake_tonic_then_from_the_cache(name, monkeypatch, tmp_path):
    spec = SPECS[name]
    _place_files(str(tmp_path), spec)
    monkeypatch.setitem(sys.modules, "tonic", _fake_tonic(data_present=True, per_class=10))
    frame_shape = (32, 32) if name == "dvs_gesture" else None  # the downsampling option
    train = LOADERS[name]("train", data_dir=str(tmp_path), frame_shape=frame_shape)
    test = LOADERS[name]("test", data_dir=str(tmp_path), frame_shape=frame_shape)
    size = frame_shape or spec.frame_shape
    chex.assert_shape(train.inputs, (None, spec.time_steps, *size, 2))
    chex.assert_type(train.inputs, np.float32)
    assert train.temporal and train.num_classes == spec.num_classes
    if spec.official_split:  # tonic gives each split; the fake has 10 recordings per class
        assert len(train) == len(test) == 10 * spec.num_classes
    else:  # 90/10 per class out of the same 100 recordings
        np.testing.assert_array_equal(np.bincount(train.labels), np.full(10, 9))
        np.testing.assert_array_equal(np.bincount(test.labels), np.full(10, 1))
    assert np.all(train.inputs.sum(axis=(1, 2, 3, 4)) >= 50)  # every fake event is inside

    monkeypatch.setitem(sys.modules, "tonic", None)  # cached now: neither tonic nor data needed
    again = LOADERS[name]("train", data_dir=str(tmp_path / "elsewhere"), frame_shape=frame_shape)
    np.testing.assert_array_equal(again.inputs, train.inputs)
    np.testing.assert_array_equal(again.labels, train.labels)


def test_registry_names_the_event_loaders():
    for name in ("digits_events", *SPECS):
        assert safjax.datasets.is_known(name)
