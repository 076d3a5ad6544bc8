"""Draw digits_events examples: the source digit, each time bin (ON red, OFF blue), all bins summed.

    python -m experiments.plot_digits_events --out=docs/digits_events.png
"""

import numpy as np
from absl import app, flags

from safjax.datasets import digits_events
from safjax.datasets.digits import load_digits

_OUT = flags.DEFINE_string("out", "docs/digits_events.png", "PNG to write.")
_DIGITS = flags.DEFINE_list("digits", ["0", "3", "5", "8"], "Classes to show (first test example of each).")
_TIME_STEPS = flags.DEFINE_integer("time_steps", digits_events.DEFAULT_TIME_STEPS, "Time bins.")
_SEED = flags.DEFINE_integer("seed", 0, "Simulation seed.")


def _colour(frame: np.ndarray) -> np.ndarray:
    """[H, W, 2] counts → RGB on white: ON fades to red, OFF to blue, both to dark purple."""
    scale = max(float(frame.max()), 1.0)
    off, on = frame[..., 0] / scale, frame[..., 1] / scale
    return np.clip(np.stack([1 - off, 1 - off - on, 1 - on], axis=-1), 0.0, 1.0)


def plot_samples(path: str, classes: list[int], time_steps: int, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, labels = load_digits("test")
    chosen = [int(np.flatnonzero(labels == c)[0]) for c in classes]
    recordings = digits_events.simulate_dvs(images[chosen], seed=seed)
    frames = digits_events.frames_from_recordings(recordings, time_steps)
    bin_ms = digits_events.SensorModel().duration_us / time_steps / 1000
    size = (1.3 * (time_steps + 2), 1.45 * len(chosen))
    fig, axes = plt.subplots(len(chosen), time_steps + 2, figsize=size, squeeze=False)
    for row, (index, recording) in enumerate(zip(chosen, recordings)):
        axes[row, 0].imshow(images[index, ..., 0], cmap="gray_r", vmin=0, vmax=1)
        axes[row, 0].set_ylabel(f"{labels[index]}: {len(recording)} ev", fontsize=8)
        for step in range(time_steps):
            axes[row, step + 1].imshow(_colour(frames[row, step]), interpolation="nearest")
        axes[row, -1].imshow(_colour(frames[row].sum(axis=0)), interpolation="nearest")
    axes[0, 0].set_title("digit 8×8", fontsize=8)
    for step in range(time_steps):
        axes[0, step + 1].set_title(f"{step * bin_ms:.0f}–{(step + 1) * bin_ms:.0f} ms", fontsize=8)
    axes[0, -1].set_title("all bins", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"digits_events (seed {seed}): ON events red, OFF blue, 32×32 sensor", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> None:
    del argv
    plot_samples(_OUT.value, [int(c) for c in _DIGITS.value], _TIME_STEPS.value, _SEED.value)


if __name__ == "__main__":
    app.run(main)
