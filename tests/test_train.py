"""The trainer and its entry point: learns digits, validates flags with one clear line."""

import json
import subprocess
import sys

import pytest

from safjax import train


def test_short_saf_e_run_learns_digits(tmp_path):
    results = train.train_and_evaluate(train.ExperimentConfig(epochs=3, workdir=str(tmp_path)))
    assert results["test_accuracy"] >= 0.95
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["method"] == "saf_e" and len(saved["train_loss_history"]) == 3
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("flag,match", [
    ("--method=sgd", "--method='sgd' is invalid"),
    ("--time_steps=0", "--time_steps=0 is invalid"),
    ("--leak=1.5", "--leak=1.5 is invalid: expected a number in (0, 1]"),
    ("--neuron=izhikevich", "--neuron='izhikevich' is invalid"),
])
def test_bad_flags_exit_nonzero_with_one_clear_line(flag, match):
    run = subprocess.run([sys.executable, "-m", "experiments.train", flag], capture_output=True, text=True)
    assert run.returncode != 0
    assert match in run.stderr
    assert "Traceback" not in run.stderr


def test_batch_size_must_divide_over_devices():
    with pytest.raises(ValueError, match="--batch_size=30 is invalid: expected a multiple of the 4 devices"):
        train.train_and_evaluate(train.ExperimentConfig(batch_size=30, num_devices=4, epochs=1))
