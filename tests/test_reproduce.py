"""`experiments.reproduce`: every method on the CIFAR-10 image folder, one table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import safjax
from safjax import reproduce

import real_cifar


def test_bad_data_and_methods_are_refused_with_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"--data=.* expected the CIFAR-10 image folder root"):
        reproduce.reproduce(str(tmp_path), str(tmp_path / "out"), 1, ["saf_e"])
    with pytest.raises(ValueError, match="--methods: unknown foo; valid: bptt"):
        reproduce.method_list("saf_e,foo")
    with pytest.raises(ValueError, match="--methods: method spec 'saf_e:truncation=2'"):
        reproduce.method_list("saf_e:truncation=2")
    specs = reproduce.method_list("")
    assert [spec.split(":")[0] for spec in specs] == list(safjax.methods.METHODS)
    assert "tbptt:truncation=2:block_size=4" in specs  # not BPTT under another name
    assert reproduce.method_list("tbptt:truncation=3,saf_e") == ["tbptt:truncation=3", "saf_e"]


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_on_a_tiny_real_subset(tmp_path):
    root = real_cifar.extract_subset(tmp_path / "data", 10, 5)
    workdir = tmp_path / "runs"
    command = [sys.executable, "-m", "experiments.reproduce", f"--data={root}", f"--workdir={workdir}",
               "--epochs=1", "--methods=saf_e,saf_f", "--", "--width=0.125", "--time_steps=1",
               "--batch_size=20", "--num_devices=1", "--augment=false"]
    env = {"SAFJAX_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-2000:]
    table = (workdir / "results.md").read_text()
    assert "python -m experiments.reproduce --data=" in table
    assert "--methods=saf_e,saf_f -- --width=0.125 --time_steps=1" in table  # rerunnable as written
    rows = [line for line in table.splitlines() if line.startswith("| saf_")]
    assert [row.split("|")[1].strip() for row in rows] == ["saf_e", "saf_f"]
    for row in rows:
        accuracy = float(row.split("|")[2])
        assert 0.0 <= accuracy <= 1.0
