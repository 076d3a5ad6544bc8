"""input_pipeline.images_per_second times the trainer's own host pipeline (experiments/pipeline_throughput.py).

The binary itself is run as a subprocess: an absl binary defines its flags at import, so importing
two of them (this one and experiments.benchmark, say) into one test process would collide."""

import subprocess
import sys

import numpy as np

from safjax import input_pipeline
from safjax.datasets.base import Dataset


def test_images_per_second_runs_the_pipeline_with_and_without_augmentation():
    rng = np.random.default_rng(0)
    dataset = Dataset("random", rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8),
                      rng.integers(0, 10, 256).astype(np.int32), 10, mean=(0.5,) * 3, std=(0.25,) * 3, augment=True)
    for augment in (False, True):
        rate = input_pipeline.images_per_second(dataset, batch_size=32, steps=3, augment=augment)
        assert np.isfinite(rate) and rate > 0


def test_the_binary_prints_both_rates():
    run = subprocess.run([sys.executable, "-m", "experiments.pipeline_throughput", "--steps=2", "--batch_size=16"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if "images/s" in line]
    assert len(lines) == 2 and "augment" in lines[1], run.stdout
