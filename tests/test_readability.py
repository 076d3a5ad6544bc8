"""What the figures and messages say (issue 20, item 11): every plot names its run (method, data
set, model, seed, lr, T), the raster draws its sampled neurons on their own axis with visible
markers and keeps its title off the first panel, sweep.png names its grid and data set, the
export says how far an unfinished run got and which method trained it, and the sweep prints no
JAX backend probe."""

import json
import subprocess
import sys

import numpy as np
import pytest

from safjax import deploy, plots, run_outputs, sweep, trainer
from safjax.experiment_config import ExperimentConfig


@pytest.fixture
def figures(monkeypatch):
    """The figures the plots would save, kept open instead."""
    kept = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: kept.append(fig))
    return kept


def test_run_title_names_seed_and_learning_rate():
    title = run_outputs.run_title({"method": "bptt", "dataset": "cifar10", "model": "vgg11_sws", "seed": 3,
                                   "learning_rate": 0.05, "time_steps": 6})
    assert title == "bptt on cifar10, vgg11_sws, seed 3, lr 0.05, T=6"


def test_raster_draws_the_sampled_neurons_on_their_own_axis_with_markers(figures):
    rng = np.random.default_rng(0)
    spikes = [(rng.random((4, 16384)) < 0.1).astype(np.float32), (rng.random((4, 10)) < 0.5).astype(np.float32)]
    plots.spike_raster(spikes, "unused.png", max_neurons=128)
    wide, narrow = figures[0].axes
    assert wide.get_ylim() == (-0.5, 127.5)
    assert wide.get_ylabel() == "neuron (128 of 16384 sampled)"
    assert narrow.get_ylim() == (-0.5, 9.5) and narrow.get_ylabel() == "neuron"
    (line,) = wide.get_lines()
    assert line.get_marker() == "s" and line.get_markersize() >= 1.0
    rows = line.get_ydata()
    assert len(rows) == int(spikes[0][:, np.linspace(0, 16383, 128).round().astype(int)].sum())
    assert rows.min() >= 0 and rows.max() <= 127


def test_raster_title_clears_the_first_panel_of_an_eight_layer_net(figures):
    spikes = [np.ones((6, 64), np.float32)] * 8
    plots.spike_raster(spikes, "unused.png", title="saf_e on cifar10, vgg11_sws, seed 0, lr 0.1, T=6: one test example")
    fig = figures[0]
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    title_bottom = fig._suptitle.get_window_extent(renderer).y0
    panel_top = fig.axes[0].title.get_window_extent(renderer).y1
    assert title_bottom >= panel_top, (title_bottom, panel_top)


def test_sweep_plot_names_its_grid_and_data_set(tmp_path, monkeypatch):
    grid = "method=saf_e,ottt_o;seed=0,1"
    cells = sweep.expand_grid(sweep.parse_grid(grid))
    (tmp_path / "sweep.json").write_text(json.dumps({"grid": grid, "base_flags": [], "cells": [c.name for c in cells]}))
    for i, cell in enumerate(cells):
        (tmp_path / cell.name).mkdir()
        (tmp_path / cell.name / "results.json").write_text(json.dumps(
            {"test_accuracy": 0.9 + 0.01 * i, "dataset": "digits_events", "time_steps": 4}))
    titles = []
    monkeypatch.setattr(plots, "sweep_comparison", lambda rows, path, series_keys, title: titles.append(title))
    sweep.write_summary(str(tmp_path), [])
    assert grid in titles[0] and "digits_events" in titles[0]


def test_export_says_how_far_the_run_got():
    config = ExperimentConfig(method="bptt", epochs=4, batch_size=32)  # 4 × (390 // 32) = 48 minibatches
    assert deploy.run_summary(config, 10, 390).endswith("checkpoint at minibatch 10 of 48 (unfinished)")
    finished = deploy.run_summary(config, 48, 390)
    assert finished.endswith("checkpoint at minibatch 48 of 48") and "seed 0, lr 0.001" in finished


@pytest.mark.slow
def test_export_names_the_method_that_trained_the_run(tmp_path):
    pytest.importorskip("nir")
    workdir = tmp_path / "run"
    trainer.train_and_evaluate(ExperimentConfig(method="bptt", epochs=1, num_devices=1, train_examples=256,
                                                test_examples=90, log_every=1000, workdir=str(workdir)))
    lines = []
    report = deploy.export_run(str(workdir), str(tmp_path / "m.nir"), reset="zero", log=lines.append)
    conversion = next(line for line in lines if line.startswith("conversion"))
    assert "training-mode (bptt) accuracy" in conversion and "SAF" not in conversion
    assert report["training_mode_accuracy"] == report["lif_accuracy"]  # BPTT trains the spiking net itself


@pytest.mark.slow
def test_sweep_prints_no_jax_backend_probe(tmp_path):
    run = subprocess.run([sys.executable, "-m", "experiments.sweep", "--grid=time_steps=0",
                          f"--workdir={tmp_path / 'sweep'}"], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "--time_steps=0 is invalid" in run.stderr
    assert "Unable to initialize backend" not in run.stdout + run.stderr
