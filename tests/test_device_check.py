"""The prepared GPU check (experiments/device_check.py) runs end to end at its tiny CPU settings, so
that the one lent GPU session runs a script that is known to work."""

import subprocess
import sys

import pytest


@pytest.mark.slow  # ≈ 30 s: ten benchmark compilations and two trainings
def test_the_device_check_runs_at_tiny_settings(tmp_path):
    run = subprocess.run([sys.executable, "-m", "experiments.device_check", "--tiny", f"--output={tmp_path}"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = (tmp_path / "summary.md").read_text()
    for heading in ("## Benchmark, f32", "## Benchmark, bf16", "## bf16 / f32 step time",
                    "## Where SAF-E's step time goes", "## Training"):
        assert heading in summary
    assert (tmp_path / "benchmark_bf16.json").exists() and any((tmp_path / "profile").rglob("perfetto_trace.json.gz"))
