"""Kill-and-resume: a run killed at any point and rerun ends exactly like an uninterrupted run;
an unreadable newest checkpoint is skipped for the one before it. Every run is a subprocess of
`experiments.train`, as a user would launch it (this test process runs with float64 enabled)."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from safjax.checkpoints import Checkpointer

import streamed_folder

FLAGS = ["--epochs=2", "--checkpoint_every=5", "--time_steps=2"]


def _command(workdir, extra=()):
    return [sys.executable, "-m", "experiments.train", f"--workdir={workdir}"] + FLAGS + list(extra)


def _run(workdir, extra=()):
    run = subprocess.run(_command(workdir, extra), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def _final_state(workdir):
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    steps = checkpointer._manager.all_steps()
    restored = checkpointer._manager.restore(max(steps))["state"]
    checkpointer.close()
    return restored


def _same_results(a, b):
    ra = json.loads((a / "results.json").read_text())
    rb = json.loads((b / "results.json").read_text())
    assert ra["train_loss_history"] == rb["train_loss_history"]
    assert ra["test_accuracy"] == rb["test_accuracy"]
    for x, y in zip(jax.tree_util.tree_leaves(_final_state(a)), jax.tree_util.tree_leaves(_final_state(b))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
@pytest.mark.parametrize("data", ["digits", "streamed image folder"])
def test_killed_run_resumes_to_identical_results(tmp_path, monkeypatch, data):
    """SIGKILLed after its first checkpoint, rerun: identical results (and, with a data worker, the
    iterator state restored from the checkpoint and no worker left behind by the killed run)."""
    import psutil

    monkeypatch.setenv("SAFJAX_CACHE_DIR", str(tmp_path / "cache"))
    extra = [] if data == "digits" else streamed_folder.write(tmp_path / "images") + ["--batch_size=8",
                                                                                      "--data_workers=1"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    # The uninterrupted reference run goes on alongside the killed and the resumed run (each is
    # mostly start-up and compilation, one core each): the test takes two runs' time, not three.
    reference_run = subprocess.Popen(_command(reference, extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
    try:
        process = subprocess.Popen(_command(killed, extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            steps = os.listdir(killed / "checkpoints") if (killed / "checkpoints").exists() else []
            if any(s.isdigit() for s in steps):
                break
            time.sleep(0.02)
        workers = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not (killed / "results.json").exists(), "the run finished before it could be killed"
        assert psutil.wait_procs(workers, timeout=10)[1] == []  # no data worker outlives the run
        resumed = _run(killed, extra)
        assert "resumed from" in resumed and "data-pipeline state" not in resumed
        _, stderr = reference_run.communicate(timeout=300)
        assert reference_run.returncode == 0, stderr[-2000:]
    finally:
        if reference_run.poll() is None:
            reference_run.kill()
            reference_run.wait()
    _same_results(reference, killed)


@pytest.mark.slow  # ~35 s of subprocess runs; keeps the default run under 10 minutes
def test_unreadable_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    reference, damaged = tmp_path / "reference", tmp_path / "damaged"
    _run(reference)
    _run(damaged)
    steps = sorted(int(s) for s in os.listdir(damaged / "checkpoints") if s.isdigit())
    newest, previous = steps[-1], steps[-2]
    state_dir = damaged / "checkpoints" / str(newest) / "state"
    for name in os.listdir(state_dir):
        if name.startswith("manifest"):
            (state_dir / name).write_text("garbage")
    os.remove(damaged / "results.json")
    assert f"resumed from {damaged / 'checkpoints'}/{previous}" in _run(damaged)
    _same_results(reference, damaged)
