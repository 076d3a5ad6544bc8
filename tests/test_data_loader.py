"""The input pipeline on grain (`safjax.data_loader`): the same minibatches as the rule of
`safjax.input_pipeline` whatever the workers, processes or resume point; failures in one line;
workers that leave nothing behind. Worker tests spawn processes (about 3 s each on 2 cores), so
the default run keeps one; the rest are slow."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from safjax import data_loader, datasets, input_pipeline
from safjax.datasets import Dataset, image_folder

import interruptible

SEED = 3


def _toy(num_examples=50, size=8):
    rng = np.random.default_rng(0)
    return Dataset("toy", rng.integers(0, 256, (num_examples, size, size, 3), dtype=np.uint8),
                   rng.integers(0, 10, num_examples).astype(np.int32), 10, mean=(0.5, 0.4, 0.3),
                   std=(0.2, 0.25, 0.3), augment=True)


def _folder(root, per_class=12, size=(10, 10), bad=None):
    """A streamed image folder of 3 classes of PNGs under ``root``; ``bad``: a file of class b
    replaced by text after loading (an image damaged since the statistics pass read it)."""
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for name in ("a", "b", "c"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    dataset = image_folder.load(str(root), "train")
    if bad:
        (root / "train" / "b" / bad).write_text("not an image")
    return dataset


def _drain(batches):
    try:
        return [(s, e, i, np.array(x), np.array(y)) for s, e, i, x, y in batches]
    finally:
        batches.close()


def _assert_same(got, want):
    assert [g[:3] for g in got] == [w[:3] for w in want]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g[3], w[3])
        np.testing.assert_array_equal(g[4], w[4])


def _rule(dataset, batch_size, first, stop, augment=True, rows=slice(None)):
    return list(input_pipeline.minibatches(dataset, batch_size=batch_size, seed=SEED, first_step=first,
                                           num_steps=stop - first, augment=augment, rows=rows))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(image_folder.CACHE_ENV, str(tmp_path / "cache"))


def test_threads_give_the_rule_s_minibatches_in_order():
    dataset = _toy()
    got = _drain(data_loader.train_batches(dataset, batch_size=8, seed=SEED, first_step=2, total_steps=14,
                                           augment=True))
    _assert_same(got, _rule(dataset, 8, 2, 14))
    # The order itself, written out: epoch e is default_rng((seed, e)).permutation(N), 6 minibatches each.
    for step, epoch, index, _, labels in got:
        order = np.random.default_rng((SEED, step // 6)).permutation(50)
        assert (epoch, index) == divmod(step, 6)
        np.testing.assert_array_equal(labels, dataset.labels[order[index * 8:(index + 1) * 8]])


def test_rows_of_two_processes_make_the_global_minibatch():
    dataset = _toy()
    whole = _drain(data_loader.train_batches(dataset, batch_size=8, seed=SEED, first_step=0, total_steps=8,
                                             augment=True))
    parts = [_drain(data_loader.train_batches(dataset, batch_size=8, seed=SEED, first_step=0, total_steps=8,
                                              augment=True, rows=input_pipeline.process_rows(8, p, 2)))
             for p in range(2)]
    glued = [(a[0], a[1], a[2], np.concatenate([a[3], b[3]]), np.concatenate([a[4], b[4]])) for a, b in zip(*parts)]
    _assert_same(glued, whole)


def test_transfer_runs_on_every_minibatch_onto_a_sharding():
    import jax

    mesh = jax.make_mesh((len(jax.devices()),), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    dataset = _toy()
    moved = data_loader.train_batches(dataset, batch_size=8, seed=SEED, first_step=0, total_steps=4, augment=True,
                                      transfer=lambda b: (*b[:3], *jax.device_put(b[3:], sharding)))
    got = []
    for step, epoch, index, inputs, labels in moved:
        assert inputs.sharding == sharding and labels.sharding == sharding
        got.append((step, epoch, index, np.asarray(inputs), np.asarray(labels)))
    moved.close()
    _assert_same(got, _rule(dataset, 8, 0, 4))


def test_the_iterator_state_resumes_at_the_next_minibatch():
    dataset = _toy()
    batches = data_loader.train_batches(dataset, batch_size=8, seed=SEED, first_step=1, total_steps=12, augment=True)
    consumed = [next(batches) for _ in range(4)]
    state = batches.state()
    batches.close()
    assert [b[0] for b in consumed] == [1, 2, 3, 4]
    resumed = _drain(data_loader.train_batches(dataset, batch_size=8, seed=SEED, first_step=5, total_steps=12,
                                               augment=True, state=state))
    _assert_same(resumed, _rule(dataset, 8, 5, 12))


def test_evaluation_batches_cover_every_example_once():
    dataset = _toy(num_examples=21)
    got = list(data_loader.eval_batches(dataset, 8))
    want = list(input_pipeline.eval_batches(dataset, 8))
    assert [n for *_, n in got] == [8, 8, 5]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g[0], w[0])
        np.testing.assert_array_equal(g[1], w[1])
    np.testing.assert_array_equal(np.concatenate([labels[:n] for _, labels, n in got]), dataset.labels)


def test_worker_processes_give_the_same_minibatches_of_a_streamed_folder_and_stop_on_close(tmp_path):
    dataset = _folder(tmp_path / "images")
    assert not isinstance(dataset.inputs, np.ndarray)  # streamed: the workers decode the files
    threads = _drain(data_loader.train_batches(dataset, batch_size=6, seed=SEED, first_step=0, total_steps=9,
                                               augment=True))
    _assert_same(threads, _rule(dataset, 6, 0, 9))
    batches = data_loader.train_batches(dataset, batch_size=6, seed=SEED, first_step=0, total_steps=9, augment=True,
                                        workers=2)
    _assert_same(_drain(batches), threads)
    assert _children() == []


def _children() -> list[int]:
    """Live (not zombie) child processes of this one, after a moment to exit."""
    import psutil

    for _ in range(20):
        alive = [c.pid for c in psutil.Process().children(recursive=True)
                 if c.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(c.cmdline())]
        if not alive:
            return []
        time.sleep(0.25)
    return alive


def test_default_workers():
    assert data_loader.default_workers(_toy()) == 0  # in memory: threads of the trainer
    streamed = Dataset("s", _FakeLazy(), np.zeros(4, np.int32), 2)
    cores = len(os.sched_getaffinity(0))
    assert data_loader.default_workers(streamed) == max(1, min(cores - 1, 8))
    assert data_loader.resolve_workers(3, streamed) == 3
    with pytest.raises(ValueError, match=r"--data_workers=-2 is invalid"):
        data_loader.resolve_workers(-2, streamed)


class _FakeLazy:
    shape, ndim, dtype = (4, 2, 2, 1), 4, np.dtype(np.uint8)

    def __getitem__(self, index):
        return np.zeros((len(np.atleast_1d(index)), 2, 2, 1), np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_file_fails_in_one_line_naming_it(tmp_path, workers):
    dataset = _folder(tmp_path / "images", bad="05.png")
    batches = data_loader.train_batches(dataset, batch_size=6, seed=SEED, first_step=0, total_steps=6, augment=True,
                                        workers=workers)
    with pytest.raises(ValueError) as error:
        _drain(batches)
    message = str(error.value)
    assert "\n" not in message and os.path.join("train", "b", "05.png") in message
    assert message.startswith("cannot read example ") and message.endswith("pass --skip_bad_examples to skip "
                                                                           "such files (each is logged and listed "
                                                                           "in results.json).")


class KillsItsProcess:
    """A lazy input that SIGKILLs the process reading example ``fatal`` (a worker dying of OOM)."""

    shape, ndim, dtype = (12, 2, 2, 1), 4, np.dtype(np.uint8)

    def __init__(self, fatal):
        self.fatal = fatal

    def __getitem__(self, index):
        if self.fatal in np.atleast_1d(index):
            os.kill(os.getpid(), signal.SIGKILL)
        return np.zeros((len(np.atleast_1d(index)), 2, 2, 1), np.uint8)


@pytest.mark.slow
def test_a_dying_worker_is_one_line_not_a_hang():
    dataset = Dataset("dies", KillsItsProcess(fatal=7), np.zeros(12, np.int32), 2)
    batches = data_loader.train_batches(dataset, batch_size=4, seed=SEED, first_step=0, total_steps=9, augment=False,
                                        workers=1)
    began = time.time()
    with pytest.raises(data_loader.DataWorkerError) as error:
        _drain(batches)
    assert time.time() - began < 60
    assert str(error.value).startswith("a data worker process died (killed by signal 9")
    assert "\n" not in str(error.value) and "--data_workers" in str(error.value)


def _ignore_ctrl_c_within(pids, limit_s: float) -> bool:
    """Whether every process of ``pids`` ignores SIGINT (its /proc status's SigIgn mask) within ``limit_s``."""
    deadline = time.time() + limit_s
    while time.time() < deadline:
        masks = []
        for pid in pids:
            with open(f"/proc/{pid}/status") as status:
                masks += [int(line.split()[1], 16) for line in status if line.startswith("SigIgn:")]
        if all(mask & (1 << (signal.SIGINT - 1)) for mask in masks):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_workers_end_with_a_killed_main_process_and_ignore_ctrl_c(tmp_path):
    """SIGINT to the process group: the workers print nothing (only the main process reports);
    SIGKILL of the main process: no worker is left a few seconds later."""
    script = tmp_path / "stream.py"
    script.write_text(textwrap.dedent("""
        import os, sys, numpy as np
        from safjax import data_loader
        from safjax.datasets import Dataset
        if __name__ == "__main__":
            data = Dataset("toy", np.zeros((4000, 8, 8, 3), np.uint8), np.zeros(4000, np.int32), 2)
            batches = data_loader.train_batches(data, batch_size=4, seed=0, first_step=0, total_steps=1000,
                                                augment=False, workers=2)
            next(batches)
            print("started", flush=True)
            for _ in batches:
                import time; time.sleep(0.05)
    """))
    import psutil

    for stop in (signal.SIGINT, signal.SIGKILL):
        process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True, cwd=tmp_path,
                                   preexec_fn=interruptible.restore_ctrl_c)
        assert process.stdout.readline().strip() == "started"
        workers = [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
        assert workers
        if stop == signal.SIGINT:  # once every worker runs (a worker still starting up is not yet covered)
            assert _ignore_ctrl_c_within(workers, 60), "a worker never set SIGINT to SIG_IGN"
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            process.kill()
        _, stderr = process.communicate(timeout=60)
        if stop == signal.SIGINT:
            assert stderr.count("KeyboardInterrupt") == 1, stderr  # the main process's only
        deadline = time.time() + 10
        while time.time() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                             for p in workers):
            time.sleep(0.2)
        assert not [p for p in workers if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_skipping_puts_the_next_example_in_place_and_reports_it_whatever_the_processes(tmp_path):
    dataset = dataclasses.replace(_folder(tmp_path / "images", bad="05.png"), skip_bad=True)  # --skip_bad_examples
    bad = [i for i, path in enumerate(dataset.inputs.paths) if path.endswith(os.path.join("b", "05.png"))][0]
    batches = data_loader.train_batches(dataset, batch_size=6, seed=SEED, first_step=0, total_steps=6, augment=False)
    got = _drain_keeping(batches)
    assert len(batches.skipped) == 1 and f"cannot read example {bad} " in batches.skipped[0]
    # The rule with the bad example's place taken by the next one, as an unbroken data set gives it.
    fixed = _folder(tmp_path / "fixed")
    order = np.random.default_rng((SEED, 0)).permutation(len(dataset))
    for step, _, _, inputs, labels in got:
        keys = order[step * 6:(step + 1) * 6]
        keys = np.where(keys == bad, bad + 1, keys)
        want_inputs, want_labels = input_pipeline.make_batch(fixed, keys, augment=False, seed=SEED, epoch=0, step=step)
        np.testing.assert_array_equal(labels, want_labels)
        np.testing.assert_array_equal(inputs, want_inputs)
    parts = [_drain(data_loader.train_batches(dataset, batch_size=6, seed=SEED, first_step=0, total_steps=6,
                                              augment=False, rows=input_pipeline.process_rows(6, p, 2)))
             for p in range(2)]
    glued = [(a[0], a[1], a[2], np.concatenate([a[3], b[3]]), np.concatenate([a[4], b[4]])) for a, b in zip(*parts)]
    _assert_same(glued, got)
    skipped = []
    assert sum(n for *_, n in data_loader.eval_batches(dataset, 8, skipped=skipped)) == len(dataset)
    assert len(skipped) == 1


def _drain_keeping(batches):
    """`_drain`, keeping ``batches.skipped`` readable afterwards."""
    got = [(s, e, i, np.array(x), np.array(y)) for s, e, i, x, y in batches]
    batches.close()
    return got
