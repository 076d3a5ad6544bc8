"""data_loader.images_per_second times the trainer's own host pipeline (experiments/pipeline_throughput.py).

The binary itself is run as a subprocess: an absl binary defines its flags at import, so importing
two of them (this one and experiments.benchmark, say) into one test process would collide."""

import subprocess
import sys

import numpy as np
import pytest

from safjax import data_loader
from safjax.datasets.base import Dataset


def test_images_per_second_runs_the_pipeline_with_and_without_augmentation():
    rng = np.random.default_rng(0)
    dataset = Dataset("random", rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8),
                      rng.integers(0, 10, 256).astype(np.int32), 10, mean=(0.5,) * 3, std=(0.25,) * 3, augment=True)
    for augment in (False, True):
        rate, first = data_loader.images_per_second(dataset, batch_size=32, steps=3, augment=augment)
        assert np.isfinite(rate) and rate > 0 and 0 < first < 60


@pytest.mark.slow  # a worker process and the binary's start-up (~12 s)
def test_the_binary_prints_both_rates_per_worker_count_of_generated_jpegs():
    run = subprocess.run([sys.executable, "-m", "experiments.pipeline_throughput", "--steps=2", "--batch_size=8",
                          "--dataset=jpeg:32", "--jpeg_images=40", "--data_workers=0,1"],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if "images/s" in line]
    assert len(lines) == 4 and "augment" in lines[1], run.stdout
    assert [line.split()[0] for line in lines] == ["data_workers=0"] * 2 + ["data_workers=1"] * 2
    assert "40 training images → (32, 32, 3)" in run.stdout
