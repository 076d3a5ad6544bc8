"""``digits_events``: an embedded, offline DVS-like data set made from scikit-learn's digits.

Made the way N-MNIST was recorded from MNIST (a DVS camera watching a still image while it moves
through three saccades), but simulated: every parameter below is a field of `SensorModel`.

1. **Image.** Each 8×8 digit (ink scaled to [0, 1], the fixed split of `load_digits`) is
   upsampled ×3 to 24×24 by bilinear interpolation with pixel centres aligned (a tent kernel of
   one source pixel, zero outside the digit) and placed on a black 32×32 canvas. Upsampling and
   sub-pixel placement are one resampling, so a move of ~0.13 px per step changes intensities
   smoothly, as a real edge sweeping over a pixel does.
2. **Motion.** The digit's top-left corner starts at (x, y) = (1, 1) px and moves at constant
   speed along a triangle, like N-MNIST's sensor: (+3, +6), (+3, −6), (−6, 0) px, each saccade
   taking 100 ms, 300 ms in all; the canvas is sampled every 2 ms (150 steps after the initial
   frame). The digit never leaves the canvas.
3. **Pixels.** A DVS pixel compares the log intensity ``L = log(I + ε)`` (ε = 0.1: the screen's
   black level, which keeps the log finite) with a reference it stored at its last event. When
   ``L − L_ref ≥ C_on`` it emits an ON event, when ``L − L_ref ≤ −C_off`` an OFF event, and the
   reference is reset to ``L``. The references start at the first frame (no events at t = 0).
   ``C_on`` and ``C_off`` are per-pixel maps ``C (1 + σ z)``, C = 0.3, σ = 0.1, z standard normal,
   clipped to ≥ C/2: the fixed-pattern threshold mismatch of one sensor, drawn from the seed.
   At 2 ms per step fewer than 0.01 % of events cross 2C within one step, so one event per pixel
   and step loses almost nothing.
4. **Timestamps.** An event found at step k (the interval ``[(k−1)·2 ms, k·2 ms)``) gets a
   timestamp drawn uniformly in that interval, in integer µs: the crossing happened sometime in it.
5. **Noise.** Background activity: 0.1 events per pixel per second (Poisson), uniform in time,
   position and polarity, about 31 per recording.

Everything random comes from ``numpy.random.default_rng(seed)`` (default 0): threshold maps
first, then per chunk of 256 examples the timestamp jitter and the noise. The same seed and the
same images in the same order give bit-identical events on a given numpy build.

About 5.7 thousand events per example (about half ON), generated at roughly 2 ms per example.
Frames: `events.to_frames` in ``mode="time"`` over the fixed span [0, 300 ms), T = ``time_steps``
(default 8) equal bins, 2 channels (0 OFF, 1 ON): ``[N, T, 32, 32, 2]`` float32 event counts,
cached by `events.cached`. ``experiments/plot_digits_events.py`` draws examples.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from safjax.datasets import events as events_lib
from safjax.datasets.digits import NUM_CLASSES, load_digits

NAME = "digits_events"
DEFAULT_TIME_STEPS = 8
FORMAT_VERSION = 1  # bump when the generator changes in a way SensorModel does not describe
_CHUNK = 256  # examples simulated together: bounds memory, and fixes how the RNG is consumed


@dataclasses.dataclass(frozen=True)
class SensorModel:
    """The simulated recording; units are pixels, µs and natural-log intensity."""

    image_scale: int = 3  # 8×8 digit → 24×24
    canvas: int = 32  # square sensor, H = W
    start: tuple[float, float] = (1.0, 1.0)  # (x, y) of the digit's top-left corner
    saccades: tuple[tuple[float, float], ...] = ((3.0, 6.0), (3.0, -6.0), (-6.0, 0.0))  # (dx, dy)
    saccade_us: int = 100_000
    step_us: int = 2_000
    eps: float = 0.1
    threshold: float = 0.3
    threshold_sigma: float = 0.1  # relative
    noise_hz: float = 0.1  # background events per pixel per second

    @property
    def duration_us(self) -> int:
        return self.saccade_us * len(self.saccades)

    @property
    def sensor_shape(self) -> tuple[int, int]:
        return (self.canvas, self.canvas)


def _corner(model: SensorModel, t_us: float) -> np.ndarray:
    """(x, y) of the digit's top-left corner at time ``t_us``: piecewise linear along the saccades."""
    vertices = np.cumsum(np.vstack([model.start, model.saccades]), axis=0)
    segment = min(int(t_us // model.saccade_us), len(model.saccades) - 1)
    fraction = t_us / model.saccade_us - segment
    return vertices[segment] + fraction * (vertices[segment + 1] - vertices[segment])


def _resampling(model: SensorModel, offset: float, source: int) -> np.ndarray:
    """``[canvas, source]`` bilinear weights of the upsampled digit placed at ``offset`` px."""
    centres = (np.arange(model.canvas) + 0.5 - offset) / model.image_scale - 0.5
    weights = 1.0 - np.abs(centres[:, None] - np.arange(source)[None, :])
    return np.maximum(weights, 0.0).astype(np.float32)


def _log_frame(model: SensorModel, images: np.ndarray, t_us: float) -> np.ndarray:
    x, y = _corner(model, t_us)
    rows = _resampling(model, y, images.shape[1])
    cols = _resampling(model, x, images.shape[2])
    return np.log(np.matmul(rows, images @ cols.T) + np.float32(model.eps))


def _simulate_chunk(model: SensorModel, images: np.ndarray, c_on: np.ndarray, c_off: np.ndarray,
                    rng: np.random.Generator) -> list[np.ndarray]:
    num, size = len(images), model.canvas
    reference = _log_frame(model, images, 0.0)
    flat_indices, steps, polarities = [], [], []
    for step in range(1, model.duration_us // model.step_us + 1):
        log_i = _log_frame(model, images, step * model.step_us)
        change = log_i - reference
        on = change >= c_on
        fired = on | (change <= -c_off)
        # flatnonzero + divmod: np.nonzero on 3-D masks is several times slower.
        index = np.flatnonzero(fired)
        flat_indices.append(index)
        steps.append(np.full(index.size, step, np.int64))
        polarities.append(on.reshape(-1)[index])
        np.copyto(reference, log_i, where=fired)
    index = np.concatenate(flat_indices)
    example, pixel = np.divmod(index, size * size)
    t = (np.concatenate(steps) - 1) * model.step_us + rng.integers(0, model.step_us, index.size)
    p = np.concatenate(polarities).astype(np.int64)

    noise_mean = model.noise_hz * size * size * model.duration_us * 1e-6
    noise_example = np.repeat(np.arange(num), rng.poisson(noise_mean, num))
    n = noise_example.size
    example = np.concatenate([example, noise_example])
    t = np.concatenate([t, rng.integers(0, model.duration_us, n)])
    pixel = np.concatenate([pixel, rng.integers(0, size * size, n)])
    p = np.concatenate([p, rng.integers(0, 2, n)])

    # One packed int64 key sorts by (example, t, pixel, p) several times faster than lexsort;
    # equal keys are equal events, so the unstable sort is deterministic.
    key = ((example * model.duration_us + t) * (size * size) + pixel) * 2 + p
    key.sort()
    key, p = np.divmod(key, 2)
    key, pixel = np.divmod(key, size * size)
    example, t = np.divmod(key, model.duration_us)
    y, x = np.divmod(pixel, size)
    bounds = np.cumsum(np.bincount(example, minlength=num))[:-1]
    return np.split(events_lib.make_events(t, x, y, p), bounds)


def simulate_dvs(images: np.ndarray, *, seed: int = 0,
                 model: SensorModel = SensorModel()) -> list[np.ndarray]:
    """One event recording (`events.EVENT_DTYPE`, time-sorted) per image of ``images`` [N, h, w(, 1)].

    Images are intensities in [0, 1]; the model is described in this module's docstring.
    """
    images = np.asarray(images, np.float32)
    if images.ndim == 4:
        images = images[..., 0]
    rng = np.random.default_rng(seed)
    shape = model.sensor_shape
    c_on, c_off = (np.maximum(model.threshold * (1 + model.threshold_sigma * rng.standard_normal(shape)),
                              model.threshold / 2).astype(np.float32) for _ in range(2))
    recordings = []
    for begin in range(0, len(images), _CHUNK):
        recordings += _simulate_chunk(model, images[begin:begin + _CHUNK], c_on, c_off, rng)
    return recordings


def frames_from_recordings(recordings: list[np.ndarray], time_steps: int,
                           model: SensorModel = SensorModel()) -> np.ndarray:
    """``[N, T, H, W, 2]`` float32 counts: T equal bins over the recording span [0, duration)."""
    return np.stack([events_lib.to_frames(r, model.sensor_shape, time_steps,
                                          time_span=(0, model.duration_us)) for r in recordings])


def load(split: str, *, data_dir: str | None = None, time_steps: int | None = None,
         seed: int = 0):
    """The `safjax.datasets.load` entry: ``[N, T, 32, 32, 2]`` event frames, cached on disk."""
    del data_dir  # embedded
    from safjax.datasets.base import Dataset

    time_steps = DEFAULT_TIME_STEPS if time_steps is None else int(time_steps)
    model = SensorModel()
    images, labels = load_digits(split)  # also validates `split`

    def build():
        return {"frames": frames_from_recordings(simulate_dvs(images, seed=seed, model=model),
                                                 time_steps, model),
                "labels": labels}

    key = {"split": split, "time_steps": time_steps, "seed": seed, "mode": "time",
           "version": FORMAT_VERSION, **dataclasses.asdict(model)}
    arrays = events_lib.cached(NAME, key, build)
    return Dataset(NAME, arrays["frames"], arrays["labels"], NUM_CLASSES, temporal=True)
