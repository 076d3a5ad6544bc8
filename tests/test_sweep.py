"""Sweeps: grid parsing, cell names, resuming, failures, GPU sharing and the summary, with a fake
runner in place of the trainer (plus one real two-cell sweep, marked slow)."""

import csv
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from experiments import sweep as sweep_main
from safjax import sweep
from safjax.trainer import ExperimentConfig

GRID = "method=saf_e,ottt_o;time_steps=2,4;seed=0,1"


def _flags(command):
    return dict(arg.removeprefix("--").split("=", 1) for arg in command if arg.startswith("--"))


class FakeTrainer:
    """A `sweep.Runner` that writes a results.json like the trainer's, without training.

    ``accuracy(flags)`` gives each cell's test accuracy; ``fail`` maps a cell name to the exit code
    it exits with after logging a traceback, without writing results (or to an exception to raise).
    """

    def __init__(self, accuracy=lambda flags: 0.5, fail=None, extra=None):
        self.accuracy, self.fail, self.extra = accuracy, fail or {}, extra or {}
        self.calls = []

    def __call__(self, command, env, log_path):
        flags = _flags(command)
        cell_dir = flags["workdir"]
        self.calls.append((os.path.basename(cell_dir), command, dict(env)))
        with open(log_path, "a") as log:
            log.write("".join(f"line {i}\n" for i in range(30)))
            outcome = self.fail.get(os.path.basename(cell_dir))
            if isinstance(outcome, Exception):
                raise outcome
            if outcome is not None:
                log.write("Traceback (most recent call last):\nRuntimeError: out of memory\n")
                return outcome
        config = dataclasses.asdict(ExperimentConfig())
        config.update({k: sweep.parse_value(k, v) for k, v in flags.items() if k in config})
        results = {**config, "epochs_completed": config["epochs"], "test_accuracy": self.accuracy(flags),
                   "wall_time_s": 3.0 * config["epochs"], **self.extra}
        with open(os.path.join(cell_dir, "results.json"), "w") as f:
            json.dump(results, f)
        return 0


def test_grid_parses_into_ordered_keys_and_values():
    assert sweep.parse_grid(" method = saf_e, ottt_o ; time_steps=2,4;learning_rate=1e-3;") == {
        "method": ["saf_e", "ottt_o"], "time_steps": ["2", "4"], "learning_rate": ["1e-3"]}


@pytest.mark.parametrize("grid,match", [
    ("", "--grid='' is empty"),
    ("methd=saf_e", "'methd' is not a flag of experiments.train"),
    ("time_steps=2,four", "time_steps='four': expected an int"),
    ("time_steps=2.5", "time_steps='2.5': expected an int"),
    ("leak=0.5,nan", "leak='nan': expected a finite float"),
    ("seed=0;seed=1", "seed appears twice"),
    ("seed=0,1,0", "seed repeats a value"),
    ("seed=0,", "seed has an empty value"),
    ("workdir=a,b", "workdir is set by the sweep"),
    ("method", "'method' is not key=value"),
])
def test_bad_grids_raise_one_clear_line(grid, match):
    with pytest.raises(ValueError, match=match) as error:
        sweep.parse_grid(grid)
    assert "\n" not in str(error.value)


def test_cells_are_the_cartesian_product_with_readable_names():
    cells = sweep.expand_grid(sweep.parse_grid(GRID))
    assert [c.name for c in cells[:3]] == [
        "method=saf_e,time_steps=2,seed=0", "method=saf_e,time_steps=2,seed=1", "method=saf_e,time_steps=4,seed=0"]
    assert len(cells) == 8 and len({c.name for c in cells}) == 8
    assert cells[-1].flags == ["--method=ottt_o", "--time_steps=4", "--seed=1"]


@pytest.mark.parametrize("flag,match", [
    ("epochs=2", "expected --name=value"),
    ("--epochs", "expected --name=value"),
    ("--epoch=2", "'epoch' is not a flag of experiments.train"),
    ("--epochs=two", "epochs='two': expected an int"),
    ("--seed=3", "seed is also a grid key"),
    ("--workdir=/tmp/x", "the sweep sets --workdir"),
])
def test_bad_base_flags_are_refused_before_anything_runs(tmp_path, flag, match):
    trainer = FakeTrainer()
    with pytest.raises(ValueError, match=match):
        sweep.run_sweep(GRID, str(tmp_path), ["--epochs=1", flag], runner=trainer, log=lambda _: None)
    assert trainer.calls == [] and not os.listdir(tmp_path)


def test_each_cell_runs_the_trainer_in_its_own_directory(tmp_path):
    trainer, lines = FakeTrainer(), []
    outcome = sweep.run_sweep(GRID, str(tmp_path), ["--epochs=2", "--batch_size=16"], runner=trainer,
                              log=lines.append)
    assert outcome.failures == [] and outcome.num_cells == 8 and len(trainer.calls) == 8
    name, command, env = trainer.calls[0]
    assert command == [sys.executable, "-m", "experiments.train", f"--workdir={tmp_path / name}",
                       "--epochs=2", "--batch_size=16", "--method=saf_e", "--time_steps=2", "--seed=0"]
    assert env == {}
    assert lines[0].startswith("sweep: 8 cells (0 already done), 8 to run, 1 at a time")
    assert lines[1].startswith("[1/8] method=saf_e,time_steps=2,seed=0: test accuracy 0.5000")
    assert re.search(r"\| elapsed 0:00:0\d, ETA 0:00:00$", lines[8])


def test_finished_cells_are_skipped_and_the_rest_rerun(tmp_path):
    # The trainer records the model it resolved from --model="": not a change of settings.
    first = FakeTrainer(extra={"model": "digits_mlp"})
    sweep.run_sweep(GRID, str(tmp_path), ["--epochs=1"], runner=first, log=lambda _: None)
    again, lines = FakeTrainer(), []
    sweep.run_sweep(GRID, str(tmp_path), ["--epochs=1"], runner=again, log=lines.append)
    assert again.calls == [] and "(8 already done), 0 to run" in lines[0]
    # One cell killed before writing results, one while writing them: both rerun (and resume).
    os.remove(tmp_path / "method=ottt_o,time_steps=2,seed=1" / "results.json")
    (tmp_path / "method=saf_e,time_steps=4,seed=0" / "results.json").write_text('{"method": "sa')
    sweep.run_sweep(GRID, str(tmp_path), ["--epochs=1"], runner=again, log=lambda _: None)
    assert [name for name, _, _ in again.calls] == ["method=saf_e,time_steps=4,seed=0",
                                                   "method=ottt_o,time_steps=2,seed=1"]


def test_results_of_other_settings_are_refused(tmp_path):
    sweep.run_sweep(GRID, str(tmp_path), ["--epochs=1"], runner=FakeTrainer(), log=lambda _: None)
    trainer = FakeTrainer()
    with pytest.raises(ValueError, match=r"8 cell\(s\) .* other settings, e.g. method=saf_e,time_steps=2,"
                                         r"seed=0 \(epochs 1 ≠ 3\): use a new --workdir"):
        sweep.run_sweep(GRID, str(tmp_path), ["--epochs=3"], runner=trainer, log=lambda _: None)
    assert trainer.calls == []


def test_failed_cells_are_recorded_and_the_sweep_goes_on(tmp_path):
    # Exit code 0 without a results.json is a failure too.
    trainer, lines = FakeTrainer(fail={"method=ottt_o,time_steps=4,seed=0": 3,
                                       "method=saf_e,time_steps=2,seed=1": 0,
                                       "method=saf_e,time_steps=4,seed=1": -9,
                                       "method=ottt_o,time_steps=2,seed=0": FileNotFoundError("python")}), []
    outcome = sweep.run_sweep(GRID, str(tmp_path), ["--epochs=1"], runner=trainer, log=lines.append)
    failures = {f.cell: f for f in outcome.failures}
    assert set(failures) == set(trainer.fail)
    oom = failures["method=ottt_o,time_steps=4,seed=0"]
    assert oom.returncode == 3 and oom.log_tail.endswith("RuntimeError: out of memory")
    assert len(oom.log_tail.splitlines()) == 15
    assert failures["method=saf_e,time_steps=2,seed=1"].log_tail.startswith("exited 0 but wrote no readable")
    assert failures["method=ottt_o,time_steps=2,seed=0"].returncode is None
    assert "FileNotFoundError('python')" in failures["method=ottt_o,time_steps=2,seed=0"].log_tail
    for status in ("exit code 3", "exit code 0", "killed by SIGKILL", "could not start"):
        assert any(f"FAILED ({status}" in line for line in lines), status
    assert sum(row["num_seeds"] for row in outcome.rows) == 4
    summary = (tmp_path / "summary.md").read_text()
    assert "4 of 8 cells finished" in summary
    assert "- `method=ottt_o,time_steps=4,seed=0`: failed, exit code 3; see" in summary
    assert "- `method=saf_e,time_steps=4,seed=1`: failed, killed by SIGKILL; see" in summary


def test_entry_point_exits_nonzero_listing_the_failed_cells(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "run_subprocess", FakeTrainer(fail={"method=ottt_o,seed=0": 1}))
    argv = sweep_main.FLAGS(["sweep", "--grid=method=saf_e,ottt_o;seed=0", f"--workdir={tmp_path}", "--",
                             "--epochs=1"])
    try:
        with pytest.raises(SystemExit, match=r"^1 of 2 cells failed: method=ottt_o,seed=0$"):
            sweep_main.main(argv)
    finally:
        sweep_main.FLAGS.unparse_flags()


def test_summary_is_mean_and_sample_std_over_seeds(tmp_path):
    accuracy = {("saf_e", "2"): [0.25, 0.5, 0.75], ("saf_e", "4"): [0.5, 1.0],
                ("ottt_o", "2"): [0.5, 0.5, 0.5], ("ottt_o", "4"): [0.75, 0.75]}
    grid = "method=saf_e,ottt_o;time_steps=2,4;seed=0,1,2"
    trainer = FakeTrainer(accuracy=lambda f: accuracy[f["method"], f["time_steps"]][int(f["seed"])],
                          fail={f"method={m},time_steps=4,seed=2": 1 for m in ("saf_e", "ottt_o")})
    rows = sweep.run_sweep(grid, str(tmp_path), ["--epochs=2"], runner=trainer, log=lambda _: None).rows
    assert [(r["method"], r["time_steps"], r["num_seeds"]) for r in rows] == [
        ("saf_e", 2, 3), ("saf_e", 4, 2), ("ottt_o", 2, 3), ("ottt_o", 4, 2)]
    assert [(r["accuracy_mean"], r["accuracy_std"]) for r in rows] == [
        (0.5, 0.25), (0.75, math.sqrt(0.125)), (0.5, 0.0), (0.75, 0.0)]
    assert all(r["time_per_epoch_s"] == 3.0 and r["peak_memory_bytes"] is None for r in rows)
    with open(tmp_path / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert table[1] == {"method": "saf_e", "time_steps": "4", "accuracy_mean": "0.75",
                        "accuracy_std": str(math.sqrt(0.125)), "time_per_epoch_s": "3.0",
                        "peak_memory_bytes": "", "num_seeds": "2"}
    summary = (tmp_path / "summary.md").read_text()
    assert "| method | time_steps | test accuracy (%) | time / epoch (s) | peak memory (MiB) | seeds |" in summary
    assert "| saf_e | 4 | 75.00 ± 35.36 | 3.00 | — | 2 |" in summary
    assert os.path.getsize(tmp_path / "sweep.png") > 0


def test_presets_can_be_swept_and_head_their_own_rows(tmp_path):
    trainer = FakeTrainer(accuracy=lambda f: {"digits": 0.5, "digits_events_tlbptt": 0.75}[f["config"]])
    outcome = sweep.run_sweep("config=digits,digits_events_tlbptt;seed=0,1", str(tmp_path), ["--epochs=1"],
                              runner=trainer, log=lambda _: None)
    assert trainer.calls[0][1][-2:] == ["--config=digits", "--seed=0"]
    assert [(r["config"], r["accuracy_mean"], r["num_seeds"]) for r in outcome.rows] == [
        ("digits", 0.5, 2), ("digits_events_tlbptt", 0.75, 2)]
    assert "| method | time_steps | config | test accuracy (%) |" in (tmp_path / "summary.md").read_text()


def test_summary_prefers_the_trainers_time_per_epoch_and_reports_peak_memory():
    results = [{"method": "bptt", "time_steps": 8, "neuron": "if", "test_accuracy": 0.9, "wall_time_s": 100.0,
                "epochs_completed": 10, "time_per_epoch_s": t, "peak_memory_bytes": m}
               for t, m in ((2.0, 3 * 2**20), (4.0, 5 * 2**20))]
    results.append({"method": "bptt", "time_steps": 8, "neuron": "lif", "test_accuracy": 0.8,
                    "wall_time_s": 100.0, "epochs_completed": 10})
    rows = sweep.summarize(results, sweep.group_keys(["neuron", "seed"]))
    assert [(r["neuron"], r["time_per_epoch_s"], r["peak_memory_bytes"]) for r in rows] == [
        ("if", 3.0, 5 * 2**20), ("lif", 10.0, None)]


def test_summarize_only_rebuilds_the_summary(tmp_path):
    sweep.run_sweep(GRID, str(tmp_path), ["--epochs=1"], runner=FakeTrainer(), log=lambda _: None)
    before = (tmp_path / "summary.md").read_text()
    for name in ("summary.md", "summary.csv", "sweep.png"):
        os.remove(tmp_path / name)
    rows = sweep.summarize_only(str(tmp_path), log=lambda _: None)
    assert len(rows) == 4 and (tmp_path / "summary.md").read_text() == before
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "sweep.png").exists()
    with pytest.raises(ValueError, match="holds no sweep.json"):
        sweep.summarize_only(str(tmp_path / "method=saf_e,time_steps=2,seed=0"))


@pytest.mark.parametrize("parallel,gpus,expected", [
    (1, ["0", "1"], [None]),  # one cell at a time: it sees every GPU (data parallel)
    (4, [], [None] * 4),
    (2, ["0", "1", "2", "3"], ["0", "1"]),
    (4, ["4", "5"], ["4", "5", "4", "5"]),
])
def test_concurrent_cells_get_gpus_round_robin(parallel, gpus, expected, monkeypatch):
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    assignments = [sweep.device_assignment(slot, parallel, gpus) for slot in range(parallel)]
    assert [env.get("CUDA_VISIBLE_DEVICES") for env, _ in assignments] == expected
    assert all(flags == (["--num_devices=1"] if env else []) for env, flags in assignments)
    shared = parallel > len(gpus) > 0
    assert all(("XLA_PYTHON_CLIENT_PREALLOCATE" in env) == shared for env, _ in assignments)


def test_cells_running_together_never_share_a_gpu(tmp_path):
    trainer, in_use, lock, clashes = FakeTrainer(), set(), threading.Lock(), []

    def runner(command, env, log_path):
        gpu = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            clashes.append(gpu in in_use)
            in_use.add(gpu)
        time.sleep(0.02)
        with lock:
            in_use.remove(gpu)
        return trainer(command, env, log_path)

    outcome = sweep.run_sweep(GRID, str(tmp_path), ["--epochs=1"], parallel=2, gpus=["0", "1"],
                              runner=runner, log=lambda _: None)
    assert outcome.failures == [] and len(clashes) == 8 and not any(clashes)
    assert all(command[-1] == "--num_devices=1" for _, command, _ in trainer.calls)
    with pytest.raises(ValueError, match="num_devices is set to 1 per cell"):
        sweep.run_sweep(GRID, str(tmp_path), ["--num_devices=2"], parallel=2, gpus=["0", "1"], runner=runner)


def test_gpus_are_found_without_asking_jax(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert sweep.detect_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert sweep.detect_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(sweep.shutil, "which", lambda name: None)
    assert sweep.detect_gpus() == []


@pytest.mark.slow
def test_a_real_two_cell_sweep_end_to_end(tmp_path):
    """The actual trainer, one epoch on digits per cell, as subprocesses (~15–40 s here)."""
    command = [sys.executable, "-m", "experiments.sweep", "--grid=method=saf_e,ottt_o;time_steps=2",
               f"--workdir={tmp_path}", "--", "--epochs=1", "--num_devices=1"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # not conftest's 4 fake devices
    run = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[2/2] method=ottt_o,time_steps=2: test accuracy" in run.stdout
    summary = (tmp_path / "summary.md").read_text()
    for method in ("saf_e", "ottt_o"):
        assert f"| {method} | 2 | " in summary
        assert (tmp_path / f"method={method},time_steps=2" / "log.txt").exists()
    with open(tmp_path / "summary.csv") as f:
        assert [row["method"] for row in csv.DictReader(f)] == ["saf_e", "ottt_o"]
    assert os.path.getsize(tmp_path / "sweep.png") > 0
    again = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and "(2 already done), 0 to run" in again.stdout
