"""The workdir and the caches survive what happens to real runs (issue 20): an unreadable record,
two runs in one workdir, --restart beside a user's files, a run killed mid-line, Ctrl-C, a full
disk, a cache writer killed mid-write, a damaged TFDS folder, a peer that never starts. Every
failure is one line that names the file or folder and the way out."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from safjax import run_outputs, run_record, trainer
from safjax.checkpoints import Checkpointer
from safjax.datasets import cache_files, image_folder
from safjax.experiment_config import ExperimentConfig

import interruptible

SMALL = ["--train_examples=256", "--test_examples=64", "--time_steps=2", "--num_devices=1",
         "--checkpoint_every=4"]


def _config(workdir, **changes):
    """An 8-minibatch-per-epoch digits run (256 train / 64 test examples) on one device."""
    values = dict(epochs=1, train_examples=256, test_examples=64, time_steps=2, num_devices=1,
                  checkpoint_every=4, workdir=str(workdir))
    return ExperimentConfig(**{**values, **changes})


def _train_command(workdir, *extra):
    return [sys.executable, "-m", "experiments.train", f"--workdir={workdir}", *SMALL, *extra]


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


# 1. An unreadable record beside checkpoints is refused, not taken for an older safjax.

@pytest.mark.parametrize("config_text, results_text", [
    ("{x\n", "{x\n"),  # both truncated (the report)
    ("[1, 2]", None),  # JSON, but not a run's settings
    (None, "{x\n"),  # a workdir of an older safjax whose results.json is damaged
])
def test_unreadable_record_beside_checkpoints_is_refused(tmp_path, config_text, results_text):
    (tmp_path / "checkpoints" / "44").mkdir(parents=True)
    for name, text in (("config.json", config_text), ("results.json", results_text)):
        if text is not None:
            (tmp_path / name).write_text(text)
    named = "config.json" if config_text is not None else "results.json"
    with pytest.raises(ValueError) as caught:
        trainer.train_and_evaluate(_config(tmp_path, leak=0.9))
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / named) in message and "is unreadable" in message
    assert "--restart" in message and "another --workdir" in message


def test_only_a_missing_record_means_an_older_safjax(tmp_path):
    """(which wrote none until its results at the end): resumed with a note, as before."""
    (tmp_path / "checkpoints" / "44").mkdir(parents=True)
    assert run_record.load(str(tmp_path)) is None


# 2. One run per workdir at a time.

def _hold_lock(workdir):
    """A process holding ``workdir``'s lock until killed (it prints "held" once it has it)."""
    code = ("import sys, time\nfrom safjax import run_record\nwith run_record.lock(sys.argv[1]):\n"
            "    print('held', flush=True)\n    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(workdir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.slow
def test_a_second_run_in_a_workdir_in_use_is_refused_and_a_killed_one_leaves_no_lock(tmp_path):
    holder = _hold_lock(tmp_path)
    try:
        with pytest.raises(ValueError) as caught:
            trainer.train_and_evaluate(_config(tmp_path))
        assert str(caught.value) == (f"--workdir={tmp_path} is in use by another run (pid {holder.pid}): wait "
                                     "for it to end (or stop it), or use another --workdir.")
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    with run_record.lock(str(tmp_path)):  # the operating system released it
        pass
    assert os.listdir(tmp_path) == [".lock"]  # refused before anything was written


@pytest.mark.slow
def test_the_lock_is_held_for_the_whole_run_and_released_after(tmp_path, monkeypatch):
    """The lock is a `flock` per open file, so even this process cannot take it twice."""
    seen = []
    load_data = trainer._load_data

    def load_data_and_try_the_lock(config):
        with pytest.raises(ValueError, match=rf"in use by another run \(pid {os.getpid()}\)"):
            with run_record.lock(config.workdir):
                pass
        seen.append("refused")
        return load_data(config)

    monkeypatch.setattr(trainer, "_load_data", load_data_and_try_the_lock)
    trainer.train_and_evaluate(_config(tmp_path))
    assert seen == ["refused"]
    with run_record.lock(str(tmp_path)):
        pass


def test_processes_of_one_multi_process_run_take_separate_locks(tmp_path):
    with run_record.lock(str(tmp_path), 0), run_record.lock(str(tmp_path), 1):
        with pytest.raises(ValueError, match="in use by another run"):
            with run_record.lock(str(tmp_path), 1):
                pass


# 3. --restart deletes only what safjax wrote.

SAFJAX_FILES = ["checkpoints/4/state/data", "checkpoints/8/meta/metadata",
                "checkpoints/12.orbax-checkpoint-tmp-1765/state/x", "tensorboard/events.out.tfevents.1.vm.7.0",
                "plots/training_curves.png", "plots/firing_rates.png", "plots/spike_raster.png",
                "metrics.jsonl", "results.json", "config.json", "config.json.tmp"]
USER_FILES = ["plots/my_figure.png", "tensorboard/notes.txt", "checkpoints/README", "sweep.log",
              "analysis/table.csv", ".hidden"]


def test_restart_deletes_only_what_safjax_wrote_and_says_what_it_kept(tmp_path, capsys):
    for name in SAFJAX_FILES + USER_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "plots" / "empty_folder_of_mine").mkdir()
    deleted = run_record.restart(str(tmp_path))
    assert "plots/training_curves.png" in deleted and "checkpoints/4" in deleted
    left = sorted(os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs)
    assert left == sorted(USER_FILES)
    assert (tmp_path / "plots" / "empty_folder_of_mine").is_dir()
    assert run_record.other_files(str(tmp_path)) == sorted(USER_FILES)
    trainer._log_restart(str(tmp_path), deleted, run_record.other_files(str(tmp_path)), shown=3)
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"--restart: kept 6 file(s) in {tmp_path} that safjax did not write: .hidden, analysis/table.csv, "
        "checkpoints/README and 3 more")


def test_restart_of_a_bare_run_leaves_no_empty_folders(tmp_path):
    for name in SAFJAX_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    run_record.restart(str(tmp_path))
    assert os.listdir(tmp_path) == []


# 8. metrics.jsonl of a run killed while writing it.

def _metrics_lines(*steps):
    return "".join(json.dumps({"step": s, "epoch": 1, "train_loss": 1.0}) + "\n" for s in steps)


@pytest.mark.parametrize("tail", ['{"step": 12, "epo', '{"step": 12}', "1"])
def test_a_partial_last_metrics_line_is_dropped_with_a_note(tmp_path, tail):
    path = tmp_path / "metrics.jsonl"
    path.write_text(_metrics_lines(4, 8, 12)[:-1] if tail == '{"step": 12}' else _metrics_lines(4, 8) + tail)
    notes = []
    outputs = run_outputs.RunOutputs(str(tmp_path), first_step=8, log=notes.append)
    outputs.flush()
    assert path.read_text() == _metrics_lines(4, 8)
    assert notes == [f"note: dropped the partial last line of {path} (a run stopped while writing it)"]


def test_a_damaged_middle_metrics_line_is_refused_naming_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(_metrics_lines(4) + "\n" + '{"step": 8, "ep\n' + _metrics_lines(12))
    with pytest.raises(ValueError, match=rf"^{path} line 3 is not a metrics record \(.*\): delete that line"):
        run_outputs.RunOutputs(str(tmp_path), first_step=12)


# 9. Ctrl-C, a full disk, a killed cache writer, a damaged TFDS folder, a peer that never starts.

def _read_until(process, text, limit_s=120):
    """stdout lines of ``process`` up to the first that contains ``text``."""
    lines, deadline = [], time.time() + limit_s
    while time.time() < deadline:
        line = process.stdout.readline()
        assert line, f"ended without printing {text!r}: {''.join(lines)}"
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} within {limit_s} s")


@pytest.mark.slow  # three runs of the binary (~40 s)
def test_ctrl_c_says_where_the_run_resumes_and_a_second_run_is_refused(tmp_path):
    command = _train_command(tmp_path, "--epochs=400")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=interruptible.restore_ctrl_c)
    try:
        _read_until(first, "epoch   2/400")
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert _one_line(second.stderr) == (f"error: --workdir={tmp_path} is in use by another run (pid "
                                            f"{first.pid}): wait for it to end (or stop it), or use another --workdir.")
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 130
    line = _one_line(stderr)
    parts = line.split()
    at, saved = int(parts[3]), int(parts[parts.index("minibatch", 4) + 1])
    assert line == (f"interrupted at minibatch {at} of 3200; rerun the same command to resume from the checkpoint "
                    f"at minibatch {saved} in {tmp_path / 'checkpoints'} (it then ends exactly like an "
                    "uninterrupted run).")
    assert 16 <= saved <= at and saved % 4 == 0
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 99999, "tr')  # as if killed mid-line
    rerun = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = _read_until(rerun, "note: dropped the partial last line")
    finally:
        rerun.kill()
        rerun.wait()
    assert f"resumed from {tmp_path / 'checkpoints'}/{saved} (minibatch {saved} of 3200)\n" in lines


@pytest.mark.slow
def test_disk_full_is_one_line_naming_the_workdir(tmp_path):
    """A full disk while writing metrics (an OSError from Python's own write) in the binary."""
    code = ("import errno\nfrom absl import app\nfrom safjax import run_outputs\n"
            "def full(self, record):\n    raise OSError(errno.ENOSPC, 'No space left on device')\n"
            "run_outputs.RunOutputs._append = full\nfrom experiments import train\napp.run(train.main)\n")
    run = subprocess.run([sys.executable, "-c", code, f"--workdir={tmp_path}", "--epochs=1", *SMALL,
                          "--log_every=2"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert _one_line(run.stderr) == (
        f"error: no space left on the disk of --workdir={tmp_path} (or its quota is used up): free space there, "
        "or copy the workdir to another disk, and rerun the same command to resume from its newest checkpoint.")


@pytest.mark.slow
def test_disk_full_while_checkpointing_is_one_error(tmp_path, monkeypatch):
    """What orbax raises when TensorStore finds the disk full: a ValueError carrying the OS text."""
    def full(self, step, state, metadata):
        raise ValueError(f'RESOURCE_EXHAUSTED: Error writing "params" in OCDBT database at local file '
                         f'"{tmp_path}/checkpoints/4.orbax-checkpoint-tmp/": Failed to write 177847 bytes to '
                         "file 7: No space left on device [os_error_code='28']")

    monkeypatch.setattr(Checkpointer, "save", full)
    with pytest.raises(run_outputs.DiskFullError, match=rf"^no space left on the disk of --workdir={tmp_path} "):
        trainer.train_and_evaluate(_config(tmp_path))


def test_disk_full_is_recognised_through_causes():
    assert run_outputs.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as error:
            raise RuntimeError("save failed") from error
    except RuntimeError as wrapped:
        assert run_outputs.is_disk_full(wrapped)
    assert not run_outputs.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not run_outputs.is_disk_full(ValueError("bad value"))


def _image_root(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    for label in ("a", "b"):
        folder = root / "train" / label
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(folder / f"{i}.png")
    return root


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.slow
def test_a_cache_writer_killed_mid_write_leaves_nothing_after_the_next_load(tmp_path, monkeypatch, capsys):
    """The writer is killed (os._exit) after writing its temporary file and before renaming it."""
    root, cache = _image_root(tmp_path), tmp_path / "cache"
    code = ("import os, sys\nfrom safjax.datasets import image_folder\n"
            "os.replace = lambda *args: os._exit(9)\nimage_folder.load(sys.argv[1], 'train')\n")
    killed = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.DEVNULL,
                              env={**os.environ, "SAFJAX_CACHE_DIR": str(cache)})
    assert killed.wait(timeout=120) == 9
    left = os.listdir(cache / "image_folder")
    assert len(left) == 1 and left[0].startswith(f".tmp-{socket.gethostname()}-{killed.pid}-")
    assert left[0].endswith(".json")  # the train split's statistics
    monkeypatch.setenv("SAFJAX_CACHE_DIR", str(cache))
    image_folder.load(str(root), "train")
    entries = os.listdir(cache / "image_folder")
    assert len(entries) == 1 and entries[0].startswith("train-") and entries[0].endswith(".json")
    assert "removed 1 temporary cache file(s) (" in capsys.readouterr().out


def test_only_the_temporary_files_of_gone_writers_are_removed(tmp_path):
    host, old = socket.gethostname(), time.time() - 2 * cache_files.STALE_AFTER_S
    names = {f".tmp-{host}-{_dead_pid()}-ab12cd34.npz": True,  # this host, writer gone
             f".tmp-{host}-{os.getpid()}-ab12cd34.npz": False,  # this host, writer running
             ".tmp-otherhost-1-ab12cd34.npz": False,  # another host, recent: may be writing
             ".tmp-otherhost-2-ab12cd34.npz": "old",  # another host, a day old
             ".tmp-k3j4h5g6.npz": "old",  # an older safjax's name, a day old
             ".tmp-z9y8x7w6.npz": False,  # an older safjax's name, recent
             "tmpq1w2e3r4.tmp": "old",  # an older events.cached name, a day old
             "train-0123-abcd.npz": "kept old"}  # a cache entry, however old
    for name, stale in names.items():
        (tmp_path / name).write_bytes(b"x" * 10)
        if isinstance(stale, str):
            os.utime(tmp_path / name, (old, old))
    removed = cache_files.remove_stale(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == sorted(n for n, s in names.items() if s in (True, "old"))


def test_the_events_cache_writes_temporary_files_with_its_pid(tmp_path, monkeypatch):
    from safjax.datasets import events

    monkeypatch.setenv("SAFJAX_CACHE_DIR", str(tmp_path))
    seen = []
    replace = os.replace

    def spy(source, target):
        seen.append(os.path.basename(source))
        replace(source, target)

    monkeypatch.setattr(os, "replace", spy)
    events.cached("toy", {"split": "train"}, lambda: {"x": np.arange(3)})
    assert len(seen) == 1 and seen[0].startswith(cache_files.temp_prefix())


def test_a_damaged_tfds_folder_is_one_line_naming_it(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    import io

    from PIL import Image
    from tensorflow_datasets.image_classification import cifar

    from safjax.datasets import tfds_images

    def png(i):
        buffer = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), i, np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()

    class LocalCifar10(cifar.Cifar10, skip_registration=True):
        name = "cifar10"

        def _split_generators(self, dl_manager):
            return {split: ((i, {"id": f"{i:05d}", "image": png(i), "label": i % 10}) for i in range(n))
                    for split, n in (("train", 5), ("test", 3))}

    config = tfds.download.DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP)
    LocalCifar10(data_dir=str(tmp_path), file_format="array_record").download_and_prepare(download_config=config)
    assert len(tfds_images.load_cifar10("train", data_dir=str(tmp_path)).labels) == 5
    (shard,) = tmp_path.glob("cifar10/*/cifar10-train.array_record-*")
    with open(shard, "r+b") as f:  # overwritten in place, as by a failed copy
        f.seek(0)
        f.write(b"\xff" * 2000)
    with pytest.raises(ValueError) as caught:
        tfds_images.load_cifar10("train", data_dir=str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"cifar10 in {tmp_path / 'cifar10'} is unreadable (")
    assert f"delete that folder and rebuild it with `tfds build cifar10 --data_dir={tmp_path} " in message


@pytest.mark.slow
def test_distributed_with_a_peer_that_never_starts_times_out_in_one_line(tmp_path):
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    began = time.time()
    run = subprocess.run([sys.executable, "-m", "experiments.train", "--distributed",
                          f"--coordinator_address=localhost:{port}", "--num_processes=2", "--process_id=0",
                          "--distributed_timeout=3", f"--workdir={tmp_path}"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and time.time() - began < 60
    assert _one_line(run.stderr) == (
        f"error: --distributed: not every process joined localhost:{port} within --distributed_timeout=3 s: start "
        "all --num_processes processes with the same --coordinator_address (reachable from each host), or raise "
        "--distributed_timeout.")
