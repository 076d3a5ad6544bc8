"""The input pipeline on grain: minibatches made in worker processes, prefetched onto the devices.

Element k of the training pipeline is global step k's minibatch — this process's rows of it,
made by `safjax.input_pipeline.TrainBatch` — a pure function of (seed, k). grain only executes
that map: decoding and augmentation in ``workers`` processes (``--data_workers``; 0 = threads
of this process), batches dealt to the workers round-robin and returned in step order, then
moved to the devices by a background thread. So minibatch k is the same whatever the number of
processes or workers (tests/test_data_loader.py), and the iterator's position is one integer,
which `TrainBatches.state` / ``state=`` save and restore with a checkpoint.

A failure while making a batch is raised here with its own type and one-line message (e.g. the
`safjax.datasets.image_files` error naming a bad file); a worker process that dies raises
`DataWorkerError` in one line; workers ignore Ctrl-C (the main process handles it) and end
within a second when the main process dies.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from safjax import input_pipeline
from safjax.datasets.base import Dataset

MAX_AUTO_WORKERS = 8
_READ_THREADS = 2  # threads of a process that makes minibatches (grain's default is 16)
_BUFFERED = 2  # minibatches made ahead per process, and moved to the devices ahead


class DataWorkerError(RuntimeError):
    """A data worker process died (killed, out of memory): the message says what to change."""


def default_workers(dataset: Dataset) -> int:
    """Worker processes for ``--data_workers=-1``: none for a data set held in memory (gathering
    rows is cheap, and each worker would hold a copy), else one per core but one, at most 8."""
    if isinstance(dataset.inputs, np.ndarray):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores - 1, MAX_AUTO_WORKERS))


def resolve_workers(requested: int, dataset: Dataset) -> int:
    """``requested`` worker processes, or `default_workers` for -1; ValueError for other negatives."""
    if requested < -1:
        raise ValueError(f"--data_workers={requested} is invalid: use -1 (automatic), 0 (this process's "
                         "threads) or a number of worker processes.")
    return default_workers(dataset) if requested == -1 else requested


def worker_init(worker_index: int, worker_count: int) -> None:
    """Run first in every worker: ignore Ctrl-C (the main process ends the run and the workers
    with it) and exit when the main process is gone (a SIGKILLed trainer leaves no workers)."""
    del worker_index, worker_count
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="safjax-parent-watch", daemon=True).start()


def _ensure_flags_parsed() -> None:
    """grain's workers read absl flags: mark them parsed when no ``app.run`` has (tests, notebooks)."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class _Reporting:
    """``i`` → ``(batch_of(i, skipped), skipped examples)``: the batch and the one-line reasons of
    the unreadable examples it skipped (only a data set loaded with ``skip_bad`` skips any)."""

    def __init__(self, batch_of):
        self.batch_of = batch_of

    def __call__(self, i: int):
        skipped = []
        return self.batch_of(i, skipped), tuple(skipped)


def _pipeline(batch_of: Callable[..., Any], first: int, stop: int, workers: int,
              transfer: Callable[[Any], Any] | None):
    """The grain dataset of elements ``first .. stop - 1`` mapped by ``batch_of`` (`_Reporting`)."""
    import grain

    if workers < 0:
        raise ValueError(f"`workers` must be ≥ 0, got {workers}.")
    dataset = grain.MapDataset.range(first, stop).map(_Reporting(batch_of))
    iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=_READ_THREADS, prefetch_buffer_size=_BUFFERED))
    if workers:
        _ensure_flags_parsed()
        iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2),
                                        worker_init_fn=worker_init).map(_owned)
    if transfer is not None:
        moved = iterable.map(lambda element: (transfer(element[0]), element[1]))
        iterable = grain.experimental.ThreadPrefetchIterDataset(moved, prefetch_buffer_size=_BUFFERED)
    return iterable


def _owned(element: tuple) -> tuple:
    """``element`` (batch, skipped) with its arrays copied out of the workers' shared memory,
    which is then freed (nothing downstream, e.g. a CPU device buffer, may alias it)."""
    batch, skipped = element
    return tuple(np.array(leaf) if isinstance(leaf, np.ndarray) else leaf for leaf in batch), skipped


def _worker_died(error: BaseException, workers: int) -> DataWorkerError | None:
    """The one-line `DataWorkerError` for grain's report of a dead worker, else None."""
    text = str(error)
    if "Worker process was terminated unexpectedly" not in text:
        return None
    code = text.split("exit code", 1)[1].split(".")[0].strip() if "exit code" in text else "?"
    cause = f"killed by signal {-int(code)}" if code.lstrip("-").isdigit() and int(code) < 0 else f"exit code {code}"
    if code == "-7":  # SIGBUS: the shared memory that carries batches (/dev/shm) is full
        return DataWorkerError(f"a data worker process died ({cause}: /dev/shm, which carries the minibatches, is "
                               "full): give the container more shared memory (docker --shm-size), a smaller "
                               "--batch_size, or --data_workers=0 to make minibatches in this process.")
    return DataWorkerError(f"a data worker process died ({cause}; out of memory?): lower --data_workers "
                           f"(now {workers}), or pass --data_workers=0 to make minibatches in this process.")


class _Batches:
    """An iterator over a grain pipeline's batches that collects the examples they skipped
    (``skipped``: one-line reasons, in order), reports dead workers in one line and can be closed."""

    def __init__(self, iterable, workers: int):
        self.workers, self.skipped = workers, []
        self._iterator = iter(iterable)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            batch, skipped = next(self._iterator)
            self.skipped.extend(skipped)
            return batch
        except StopIteration:
            raise
        except Exception as error:
            died = _worker_died(error, self.workers)
            if died is not None:
                raise died from None
            raise

    def close(self) -> None:
        """Stop the workers and threads and free their shared memory."""
        iterator, self._iterator = self._iterator, iter(())
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        del iterator
        gc.collect()


class TrainBatches(_Batches):
    """`train_batches`' iterator of ``(global_step, epoch, index_in_epoch, inputs, labels)``."""

    def __init__(self, iterable, workers: int, first: int):
        super().__init__(iterable, workers)
        self.first = first

    def state(self) -> dict:
        """The position of the next minibatch, for a checkpoint (``train_batches(state=...)``)."""
        return {"first_step": self.first, "grain": self._iterator.get_state()}


def train_batches(dataset: Dataset, *, batch_size: int, seed: int, first_step: int, total_steps: int,
                  augment: bool, rows: slice = slice(None), workers: int = 0,
                  transfer: Callable[[Any], Any] | None = None, state: dict | None = None) -> TrainBatches:
    """``(global_step, epoch, index_in_epoch, inputs, labels)`` for global steps ``first_step ..
    total_steps - 1``: exactly `input_pipeline.minibatches`' minibatches (this process's ``rows``),
    made by ``workers`` processes (0: threads of this one), each tuple passed through ``transfer``
    (e.g. its arrays onto the devices) by a background thread. ``state`` (`TrainBatches.state` of an earlier
    iterator over the same data, workers and rows) resumes where it stopped; the caller checks the
    first step it yields. In a data set loaded with ``skip_bad`` an unreadable example is
    replaced by the next one and its reason added to ``.skipped`` (`input_pipeline.make_batch`).
    Close the iterator (``.close()``) when done."""
    if not 0 <= first_step <= total_steps:
        raise ValueError(f"`first_step` must be in 0..{total_steps}, got {first_step}.")
    batch_of = input_pipeline.TrainBatch(dataset, batch_size, seed, augment, rows)
    first = first_step if state is None else int(state["first_step"])
    iterable = _pipeline(batch_of, first, total_steps, workers, transfer)
    batches = TrainBatches(iterable, workers, first)
    if state is not None:
        batches._iterator.set_state(state["grain"])
    return batches


def eval_batches(dataset: Dataset, batch_size: int, rows: slice = slice(None), workers: int = 0,
                 skipped: list[str] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """``(inputs, labels, num_valid)`` covering every example once, in order: exactly
    `input_pipeline.eval_batches`, made by ``workers`` processes (0: threads of this one). The
    unreadable examples a data set loaded with ``skip_bad`` skipped are added to ``skipped``."""
    batch_of = input_pipeline.EvalBatch(dataset, batch_size, rows)
    batches = _Batches(_pipeline(batch_of, 0, batch_of.num_batches, workers, None), workers)
    try:
        yield from batches
    finally:
        batches.close()
        if skipped is not None:
            skipped.extend(batches.skipped)


def images_per_second(dataset: Dataset, batch_size: int, steps: int, augment: bool, workers: int = 0
                      ) -> tuple[float, float]:
    """``(images/s, seconds to the first minibatch)`` of `train_batches` with ``workers`` over
    ``steps`` minibatches of ``batch_size`` timed after the first (whose wait, worker start-up
    included, is the second figure): the host side of training alone, no device
    (`experiments/pipeline_throughput.py`)."""
    began = time.perf_counter()
    batches = train_batches(dataset, batch_size=batch_size, seed=0, first_step=0, total_steps=steps + 1,
                            augment=augment, workers=workers)
    try:
        next(batches)
        start = time.perf_counter()
        for _ in batches:
            pass
        return steps * batch_size / (time.perf_counter() - start), start - began
    finally:
        batches.close()
