"""Multi-host data parallelism on one machine: two processes × two CPU devices, joined by
`jax.distributed` (gloo collectives), train exactly like one process with four devices — each
process feeds its own rows of every global minibatch. Runs the real entry point."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import streamed_folder

FLAGS = ["--epochs=2", "--batch_size=32", "--checkpoint_every=30"]


def _env(devices: int, tmp_path) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               SAFJAX_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("JAX_ENABLE_X64", None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("data", ["digits", "streamed image folder"])
def test_two_processes_train_like_one_process_with_the_same_devices(tmp_path, data):
    """On a streamed image folder each process runs its own data worker process (the single
    process: threads), and each reads its own rows' files; its unreadable files, skipped, are
    reported by process 0 whichever process's rows held them."""
    command = [sys.executable, "-m", "experiments.train"] + FLAGS
    workers_flag = []
    if data != "digits":
        command += streamed_folder.write(tmp_path / "images") + ["--skip_bad_examples"]
        for label, index in [(0, 3), (0, 17), (1, 8), (1, 30), (2, 1), (2, 25)]:  # 6 of 120 train files
            (tmp_path / "images" / "train" / f"class{label}" / f"{index:02d}.png").write_bytes(b"")
        workers_flag = ["--data_workers=1"]
    port = _free_port()
    workers = [
        subprocess.Popen(command + workers_flag + ["--distributed", f"--coordinator_address=localhost:{port}",
                                    "--num_processes=2", f"--process_id={i}", f"--workdir={tmp_path / 'two'}"],
                         env=_env(2, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-2000:]
    single = subprocess.run(command + ["--data_workers=0", f"--workdir={tmp_path / 'one'}"], env=_env(4, tmp_path),
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert (two["num_processes"], two["num_devices"]) == (2, 4)
    assert (one["num_processes"], one["num_devices"]) == (1, 4)
    # Same global batches, same devices: only the all-reduce's summation order may differ.
    np.testing.assert_allclose(two["train_loss_history"], one["train_loss_history"], rtol=1e-6)
    assert two["test_accuracy"] == one["test_accuracy"]
    assert two["skipped_examples"] == one["skipped_examples"]
    assert len(one["skipped_examples"]) == (6 if data != "digits" else 0)
