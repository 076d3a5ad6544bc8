"""Every absl binary in experiments/ runs end to end at tiny settings, as a user launches it.

Binaries that other test files already run as a subprocess (train, device_check, export,
pipeline_throughput, reproduce, sweep) are not run again here; `test_every_binary_is_run_by_a_test`
checks that each binary is run by some test. The peer comparison times safjax alone where PyTorch
is absent; its three-library parts skip there. Also: the test-wide settings of tests/conftest.py
hold in every pytest-xdist worker.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(tmp_path, module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` from the repository root, with its data cache in ``tmp_path``."""
    env = {**os.environ, "SAFJAX_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def _ok(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def _is_png(path) -> bool:
    return pathlib.Path(path).read_bytes()[:8] == PNG_SIGNATURE


def test_every_binary_is_run_by_a_test():
    binaries = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "experiments").rglob("*.py")
        if '__name__ == "__main__"' in path.read_text()
    )
    assert "experiments.peers.compare" in binaries and "experiments.train" in binaries
    tests = "\n".join(path.read_text() for path in (ROOT / "tests").glob("test_*.py"))
    assert [b for b in binaries if f'"-m", "{b}"' not in tests and f'"{b}",' not in tests] == []


def test_suite_settings_hold_in_every_worker():
    """tests/conftest.py's settings in this process (an xdist worker by default), and only the
    device count handed to subprocesses, once (a worker inherits its controller's flags)."""
    assert jax.config.jax_enable_x64
    assert jax.device_count() == 4
    flags = os.environ["XLA_FLAGS"].split()
    assert flags.count("--xla_force_host_platform_device_count=4") == 1
    assert not [f for f in flags if f.startswith("--xla_backend_optimization_level")]


# ----------------------------------------------------------------------------- benchmarks


@pytest.mark.slow
def test_benchmark(tmp_path):
    results, figure = tmp_path / "b.json", tmp_path / "b.png"
    _ok(_run(tmp_path, "experiments.benchmark", "--model=digits_mlp", "--time_steps=2", "--methods=saf_e,bptt",
             "--repeats=1", "--batch_size=4", f"--output={results}", f"--plot={figure}"))
    saved = json.loads(results.read_text())
    assert [(r["method"], r["time_steps"], r["batch_size"]) for r in saved["records"]] == [
        ("saf_e", 2, 4), ("bptt", 2, 4)]
    bptt = saved["records"][1]
    assert bptt["temp_bytes_vs_bptt"] == 1.0 and bptt["step_time_ms_vs_bptt"] == 1.0  # the baseline itself
    assert all(r["temp_bytes"] > 0 and r["step_time_ms"] > 0 for r in saved["records"])
    assert _is_png(figure)


@pytest.mark.slow
def test_report_benchmark(tmp_path):
    """A saved benchmark of the repository (docs/data), re-rendered as docs/benchmarks.md says."""
    results, figure = ROOT / "docs" / "data" / "digits_mlp_cpu.json", tmp_path / "r.png"
    report = _ok(_run(tmp_path, "experiments.report_benchmark", str(results), str(figure)))
    assert report.startswith("digits_mlp on digits shapes")
    rows = [line.split("|")[1:3] for line in report.splitlines()[4:] if line.startswith("| ")]
    records = json.loads(results.read_text())["records"]
    assert sorted((m.strip(), int(t)) for m, t in rows) == sorted((r["method"], r["time_steps"]) for r in records)
    assert _is_png(figure)


@pytest.mark.slow
def test_memory_breakdown(tmp_path):
    dump = tmp_path / "dump"
    out = _ok(_run(tmp_path, "experiments.memory_breakdown", "--model=digits_mlp", "--dataset=digits",
                   "--batch_size=2", "--time_steps=2", "--methods=saf_e,bptt", "--top=3", f"--dump_dir={dump}"))
    for method in ("saf_e", "bptt"):
        assert [line for line in out.splitlines() if line.startswith(f"{method}: temp ")], out
    assert out.count("by class and jax op:") == 2
    assert list(dump.rglob("*buffer-assignment.txt")) and list(dump.rglob("*live-range.txt"))


# ----------------------------------------------------------------------------- figures and tables


@pytest.mark.slow
def test_plot_digits_events(tmp_path):
    figure = tmp_path / "events.png"
    _ok(_run(tmp_path, "experiments.plot_digits_events", f"--out={figure}", "--digits=0,3"))
    assert _is_png(figure)


def _sweep_cell(sweep_dir, truncation, block_size, accuracy, temp_bytes):
    """A results.json as `experiments.train` writes it (the fields tlbptt_table reads) for one
    tbptt cell on digits (digits_mlp: one spiking layer), T = 2."""
    from safjax.experiment_config import ExperimentConfig

    config = ExperimentConfig(method="tbptt", time_steps=2,
                              method_settings={"truncation": truncation, "block_size": block_size})
    results = {**config.as_flags(), "model": config.model_name, "test_accuracy": accuracy,
               "compiled_memory": {"temp_bytes": temp_bytes}, "time_per_epoch_s": 3.0}
    cell = sweep_dir / f"truncation={truncation},block_size={block_size}"
    cell.mkdir(parents=True)
    (cell / "results.json").write_text(json.dumps(results))


@pytest.mark.slow
def test_tlbptt_table(tmp_path):
    sweep_dir, table, figure = tmp_path / "sweep", tmp_path / "kb.md", tmp_path / "kb.png"
    _sweep_cell(sweep_dir, 2, 1, accuracy=0.9, temp_bytes=1_000_000)  # K = T, B = layers: BPTT
    _sweep_cell(sweep_dir, 1, 1, accuracy=0.8, temp_bytes=500_000)
    out = _ok(_run(tmp_path, "experiments.tlbptt_table", f"--sweep_dir={sweep_dir}", f"--output={table}",
                   f"--plot={figure}"))
    assert table.read_text() == out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines()[2:]}
    # B, accuracy, Δ accuracy, memory MB, memory / BPTT, accesses / BPTT, MACs / BPTT, stored activations / BPTT
    assert rows["2"][:8] == ["1", "0.9000", "+0.00 %", "1.0", "1.000", "1.000", "1.000", "1.000"]
    assert rows["1"][:5] == ["1", "0.8000", "-10.00 %", "0.5", "0.500"]
    assert rows["1"][7] == "0.500"  # K of T = 2 steps' activations stored
    assert _is_png(figure)


@pytest.mark.slow
def test_tlbptt_table_refuses_an_empty_sweep_in_one_line(tmp_path):
    run = _run(tmp_path, "experiments.tlbptt_table", f"--sweep_dir={tmp_path}")
    assert run.returncode != 0
    assert f"error: no results.json under {tmp_path}/*/" in run.stderr
    assert "Traceback" not in run.stderr


# ----------------------------------------------------------------------------- CIFAR-shaped data


def _write_cifar_folder(root, per_class: int) -> None:
    """``root/train/<class>/<i>.png``: random 32×32 RGB images, 10 classes (VGG-11's input)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(10):
        folder = root / "train" / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.mark.slow  # ≈ 1 min of CPU: four gradients and one update of VGG-11 compiled
def test_gradient_scales(tmp_path):
    root = tmp_path / "cifar"
    _write_cifar_folder(root, per_class=1)
    out = _ok(_run(tmp_path, "experiments.gradient_scales", f"--data={root}", "--width=0.125", "--time_steps=2",
                   "--batch_size=4", "--steps=1", timeout=600))
    norms = [line for line in out.splitlines() if line.startswith(("| bptt", "| ottt_a", "| saf_f", "| spike_rep"))]
    assert len(norms) == 4 and all(len(line.split("|")) == 2 + 9 + 1 for line in norms)  # 8 layers + readout
    bands = [line for line in out.splitlines() if line.startswith("| L")]
    assert len(bands) == 8
    for line in bands:  # inside, on an edge, above, below: a partition of the neurons
        shares = [float(c) for c in line.split("|")[2:6]]
        assert math.isclose(sum(shares), 1.0, abs_tol=2e-3), line
    updates = [line for line in out.splitlines() if line.startswith("| 1 |")]
    assert len(updates) == 1 and math.isfinite(float(updates[0].split("|")[2]))


# ----------------------------------------------------------------------------- peers


def _peers(tmp_path, *args):
    output = tmp_path / "peers.json"
    _ok(_run(tmp_path, "experiments.peers.compare", "--time_steps=2", "--batch_size=2", "--steps=1",
             f"--output={output}", *args, timeout=600))
    return json.loads(output.read_text())["records"]


@pytest.mark.parametrize("methods", ["saf_e", pytest.param("bptt,ottt_o", marks=pytest.mark.slow)])
@pytest.mark.slow
def test_peers_compare_times_safjax(tmp_path, methods):
    """The safjax workers, which need no PyTorch."""
    records = _peers(tmp_path, "--libraries=safjax", f"--safjax_methods={methods}")
    assert [(r["library"], r["method"], r["time_steps"], r["batch_size"]) for r in records] == [
        ("safjax", m, 2, 2) for m in methods.split(",")]
    for r in records:
        assert len(r["losses"]) == 2 and all(math.isfinite(x) for x in r["losses"])  # warm-up + 1 step
        assert r["step_ms"] > 0 and r["peak_rss_mb"] > 0
        assert "time_vs_snntorch" not in r  # no snnTorch run to divide by


def _peer_libraries():
    for name in ("torch", "snntorch", "spikingjelly"):
        pytest.importorskip(name, reason=f"{name} absent: the peer comparison needs "
                            "experiments/peers/requirements.txt")


@pytest.mark.slow
def test_peers_compare_times_all_three_libraries(tmp_path):
    _peer_libraries()
    records = _peers(tmp_path, "--safjax_methods=saf_e")
    assert [(r["library"], r["method"]) for r in records] == [
        ("safjax", "saf_e"), ("snntorch", "bptt"), ("spikingjelly", "bptt")]
    assert records[1]["time_vs_snntorch"] == 1.0  # snnTorch against itself


@pytest.mark.slow
def test_peers_check_agrees(tmp_path):
    _peer_libraries()
    out = _ok(_run(tmp_path, "experiments.peers.compare", "--check", "--check_batch_size=1", timeout=600))
    assert "check: PASS" in out
