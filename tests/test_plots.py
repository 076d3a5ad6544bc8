"""Figures: each writes a PNG of its documented size; bad input raises ValueError naming the argument."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from safjax import plots

HISTORY = [{"epoch": e, "train_loss": 2.0 / e, "test_accuracy": 0.5 + 0.1 * e, "firing_rates": [0.2, 0.1 * e]}
           for e in range(1, 4)]
ROWS = [{"method": m, "time_steps": t, "accuracy_mean": a, "accuracy_std": 0.01}
        for m, a0 in (("saf_e", 0.9), ("ottt_o", 0.85)) for t, a in ((2, a0), (4, a0 + 0.02), (8, a0 + 0.03))]


def _spikes(num_steps, widths, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((num_steps, n)) < 0.2).astype(np.float32) for n in widths]


def _draw(name, path):
    """Every figure of this module, by name, on valid input."""
    return {
        "training_curves": lambda: plots.training_curves(HISTORY, path, title="run"),
        "firing_rate_curves": lambda: plots.firing_rate_curves(HISTORY, path, layer_names=["fc1", "fc2"]),
        "spike_raster": lambda: plots.spike_raster(_spikes(4, (300, 10)), path, title="digit 0"),
        "sweep_comparison": lambda: plots.sweep_comparison(ROWS, path),
        "sweep_comparison_bars": lambda: plots.sweep_comparison([r for r in ROWS if r["time_steps"] == 4], path),
    }[name]()


@pytest.mark.parametrize("name,size_in", [
    ("training_curves", (10, 4)),
    ("firing_rate_curves", (8, 4)),
    ("spike_raster", (8, 1 + 2 * 2)),
    ("sweep_comparison", (8, 5)),
    ("sweep_comparison_bars", (8, 5)),
])
def test_each_figure_is_a_png_of_its_documented_size(tmp_path, name, size_in):
    path = str(tmp_path / f"{name}.png")
    _draw(name, path)
    image = plt.imread(path)
    width, height = size_in
    assert image.shape[:2] == (height * 100, width * 100)
    assert image.std() > 0  # something was drawn


def test_raster_of_a_wide_layer_shows_a_subset_and_says_so(tmp_path, monkeypatch):
    titles = []
    monkeypatch.setattr(plt.Axes, "set_title", lambda ax, text, **kw: titles.append(text))
    plots.spike_raster(_spikes(3, (1000, 5)), str(tmp_path / "r.png"), max_neurons=50)
    assert "50 of 1000 neurons shown" in titles[0]
    assert "shown" not in titles[1]


def test_sweep_rows_with_other_grid_keys_get_one_line_each(tmp_path):
    rows = [dict(r, neuron=n) for r in ROWS for n in ("lif", "if")]
    with pytest.raises(ValueError, match="`rows`: two rows for 'saf_e'"):
        plots.sweep_comparison(rows, str(tmp_path / "a.png"))
    plots.sweep_comparison(rows, str(tmp_path / "b.png"), series_keys=("method", "neuron"))


@pytest.mark.parametrize("call,match", [
    (lambda p: plots.training_curves([], p), "`history` is empty"),
    (lambda p: plots.training_curves([{"epoch": 1, "train_loss": 1.0}], p), r"`history\[0\]` lacks test_accuracy"),
    (lambda p: plots.firing_rate_curves([], p), "`history` is empty"),
    (lambda p: plots.firing_rate_curves(HISTORY, p, layer_names=["only one"]), "`layer_names` has 1 names"),
    (lambda p: plots.firing_rate_curves(HISTORY[:1] + [dict(HISTORY[1], firing_rates=[0.1])], p),
     "`history`: every epoch needs the same"),
    (lambda p: plots.spike_raster([], p), "`spikes` must be a non-empty list"),
    (lambda p: plots.spike_raster(np.zeros((4, 10)), p), "`spikes` must be a non-empty list"),
    (lambda p: plots.spike_raster([np.zeros(10)], p), r"`spikes\[0\]` must be a non-empty \[T, N\] array"),
    (lambda p: plots.spike_raster([np.zeros((4, 10)), np.zeros((4, 2, 5))], p), r"`spikes\[1\]`"),
    (lambda p: plots.spike_raster([np.zeros((4, 10)), np.zeros((3, 10))], p), "disagree on T"),
    (lambda p: plots.sweep_comparison([], p), "`rows` is empty"),
    (lambda p: plots.sweep_comparison([{"method": "saf_e", "accuracy_mean": 0.9}], p), "lacks accuracy_std"),
])
def test_bad_input_raises_naming_the_argument(tmp_path, call, match):
    path = tmp_path / "never.png"
    with pytest.raises(ValueError, match=match):
        call(str(path))
    assert not path.exists()
