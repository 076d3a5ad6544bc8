"""The export command on real trained runs (docs/deploy.md): exact for a hard-reset net, refused or
approximate (with its accuracy change measured) for a soft-reset one, and the energy table."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("nir")

from safjax import deploy, trainer  # noqa: E402
from safjax.experiment_config import ExperimentConfig  # noqa: E402

SMALL = dict(epochs=1, num_devices=1, train_examples=512, test_examples=180, log_every=1000)


@pytest.fixture(scope="module")
def hard_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hard")
    trainer.train_and_evaluate(ExperimentConfig(method="bptt", reset="hard", workdir=str(workdir), **SMALL))
    return workdir


def test_a_hard_reset_run_exports_exactly_with_its_costs(hard_run, tmp_path):
    lines = []
    report = deploy.export_run(str(hard_run), str(tmp_path / "model.nir"), log=lines.append)
    assert (tmp_path / "model.nir").stat().st_size > 1000
    assert report["exported_accuracy"] == report["lif_accuracy"] > 0.5
    assert report["approximations"] == [] and report["node_count"] == 6  # input, flatten, affine, LIF, affine, output
    assert "training_mode_accuracy" not in report  # a hard-reset net has no SAF forward to convert from
    totals = report["synaptic_operations"]
    assert totals["mac_per_inference"] == 4 * 64 * 256  # direct encoding: layer 1 is analog at every step
    assert report["energy_estimate"]["snn_energy_nj"] > 0
    assert any("| readout |" in line for line in lines)  # the per-layer table is printed


@pytest.mark.slow
def test_a_soft_reset_run_is_refused_then_exported_approximately(tmp_path):
    workdir = tmp_path / "soft"
    trainer.train_and_evaluate(ExperimentConfig(method="saf_e", workdir=str(workdir), **SMALL))
    with pytest.raises(ValueError, match="soft \\(subtractive\\) reset"):
        deploy.export_run(str(workdir), str(tmp_path / "refused.nir"), log=lambda _: None)
    report = deploy.export_run(str(workdir), str(tmp_path / "approx.nir"), reset="zero", log=lambda _: None)
    assert report["approximations"] and 0 <= report["exported_accuracy"] <= 1
    assert report["training_mode_accuracy"] == report["lif_accuracy"]  # the conversion of §4.7, measured


@pytest.mark.slow  # the binary's two subprocesses; export_run itself is tested above
def test_the_command_reports_and_refuses_in_one_line(hard_run, tmp_path):
    run = subprocess.run([sys.executable, "-m", "experiments.export", f"--workdir={hard_run}",
                          f"--output={tmp_path / 'm.nir'}", f"--report={tmp_path / 'r.json'}"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "NIR nodes, exact" in run.stdout
    assert json.loads((tmp_path / "r.json").read_text())["exported_accuracy"] > 0.5
    missing = subprocess.run([sys.executable, "-m", "experiments.export", f"--workdir={tmp_path / 'none'}",
                              f"--output={tmp_path / 'x.nir'}"], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "holds no run" in missing.stderr and "Traceback" not in missing.stderr
