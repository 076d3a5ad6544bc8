"""Deterministic minibatches from an in-memory `Dataset`, split across processes, prefetched.

Every minibatch is a pure function of ``(seed, global step)``:

- the order of epoch ``e`` is ``np.random.default_rng((seed, e)).permutation(N)`` (`epoch_order`)
  and minibatch ``i`` of the epoch takes positions ``i·B .. (i+1)·B`` of it, dropping the
  remainder (``N // B`` minibatches per epoch);
- the augmentation of global step ``k`` draws from ``np.random.default_rng((seed, e, k))``, for the
  whole *global* minibatch, before this process keeps its ``rows``.

So a resumed run (``first_step=k``) sees exactly the data of an uninterrupted one, and a run on
P processes sees exactly the examples of a run on one: process p feeds rows
`process_rows(B, p, P)` of every global minibatch.

Batches are batch-major: static images ``[B, H, W, C]`` float32, event frames
``[B, T, H, W, C]`` float32, labels ``[B]`` int32.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from safjax import augment as augment_lib
from safjax.datasets.base import Dataset


def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The example order of ``epoch``: ``[N]`` int64, a permutation of 0..N-1 that depends on
    (seed, epoch) only."""
    return np.random.default_rng((seed, epoch)).permutation(num_examples)


def process_rows(global_batch_size: int, process_index: int, process_count: int) -> slice:
    """The rows of every global minibatch that process ``process_index`` of ``process_count``
    feeds: the contiguous block ``[p·B/P, (p+1)·B/P)``."""
    if process_count < 1:
        raise ValueError(f"`process_count` must be ≥ 1, got {process_count}.")
    if not 0 <= process_index < process_count:
        raise ValueError(f"`process_index` must be in 0..{process_count - 1}, got {process_index}.")
    if global_batch_size % process_count:
        raise ValueError(f"`global_batch_size`={global_batch_size} must be a multiple of the "
                         f"{process_count} processes: choose a batch size divisible by {process_count}.")
    per_process = global_batch_size // process_count
    return slice(process_index * per_process, (process_index + 1) * per_process)


def make_batch(dataset: Dataset, indices: np.ndarray, *, augment: bool, seed: int, epoch: int, step: int,
               rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Gather, augment and normalise rows ``rows`` of the global minibatch ``indices [B]``.

    Static images: with ``augment and dataset.augment``, `augment.standard` parameters are drawn
    for all B examples from ``default_rng((seed, epoch, step))`` and this process's rows are
    augmented with theirs; then uint8 is scaled to [0, 1] and, when the data set has
    ``mean``/``std``, normalised per channel. Float images skip the scaling. Event frames
    (``dataset.temporal``) pass through as float32, unaugmented and unnormalised.

    Returns ``(inputs [b, H, W, C] or [b, T, H, W, C] float32, labels [b] int32)`` with
    b the length of ``rows``.
    """
    indices = np.asarray(indices)
    local = indices[rows]
    labels = dataset.labels[local].astype(np.int32, copy=False)
    inputs = dataset.inputs[local]
    if dataset.temporal:
        return inputs.astype(np.float32, copy=False), labels
    if augment and dataset.augment:
        rng = np.random.default_rng((seed, epoch, step))
        params = augment_lib.sample_standard(rng, len(indices), dataset.inputs.shape[1:3])
        inputs = augment_lib.standard_at(inputs, params.rows(rows))
    # x / 255 (uint8 only), then (x - mean) / std, fused into one multiply-add per channel.
    scale = np.full(inputs.shape[-1], 1 / 255 if inputs.dtype == np.uint8 else 1.0)
    shift = np.zeros(inputs.shape[-1])
    if dataset.mean is not None and dataset.std is not None:
        scale, shift = scale / np.asarray(dataset.std), -np.asarray(dataset.mean) / np.asarray(dataset.std)
    inputs = inputs.astype(np.float32)
    inputs *= scale.astype(np.float32)
    inputs += shift.astype(np.float32)
    return inputs, labels


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full minibatches per epoch (the remainder is dropped); raise if there are none."""
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be ≥ 1, got {batch_size}.")
    if batch_size > num_examples:
        raise ValueError(f"`batch_size`={batch_size} exceeds the {num_examples} training examples: "
                         "use a smaller batch size.")
    return num_examples // batch_size


def minibatches(dataset: Dataset, *, batch_size: int, seed: int, first_step: int, num_steps: int,
                augment: bool, rows: slice = slice(None)
                ) -> Iterator[tuple[int, int, int, np.ndarray, np.ndarray]]:
    """Yield ``(global_step, epoch, index_in_epoch, inputs, labels)`` for global steps
    ``first_step .. first_step + num_steps - 1`` of B = ``batch_size`` (global) examples each.

    ``inputs``/``labels`` are this process's ``rows`` of the minibatch (see `make_batch`); with
    the default ``rows`` they are the whole minibatch.
    """
    if first_step < 0 or num_steps < 0:
        raise ValueError(f"`first_step` and `num_steps` must be ≥ 0, got {first_step} and {num_steps}.")
    per_epoch = steps_per_epoch(len(dataset), batch_size)
    order, order_epoch = None, None
    for global_step in range(first_step, first_step + num_steps):
        epoch, index = divmod(global_step, per_epoch)
        if epoch != order_epoch:
            order, order_epoch = epoch_order(seed, epoch, len(dataset)), epoch
        indices = order[index * batch_size:(index + 1) * batch_size]
        inputs, labels = make_batch(dataset, indices, augment=augment, seed=seed, epoch=epoch,
                                    step=global_step, rows=rows)
        yield global_step, epoch, index, inputs, labels


def images_per_second(dataset: Dataset, batch_size: int, steps: int, augment: bool) -> float:
    """Images/s that `minibatches` produces on this thread over ``steps`` minibatches of
    ``batch_size`` (the first, untimed, is made before), with or without augmentation: the host
    side of training alone (`experiments/pipeline_throughput.py`)."""
    batches = minibatches(dataset, batch_size=batch_size, seed=0, first_step=0, num_steps=steps + 1,
                          augment=augment)
    next(batches)
    start = time.perf_counter()
    for _ in batches:
        pass
    return steps * batch_size / (time.perf_counter() - start)


def eval_batches(dataset: Dataset, batch_size: int, rows: slice = slice(None)
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Yield ``(inputs, labels, num_valid)`` covering every example once, in order, unaugmented.

    Every batch has ``batch_size`` rows (so a jitted evaluation compiles once): the last one is
    padded with repeats of the data set's last example, and only its first ``num_valid`` rows are
    real. With ``rows``, the batch and ``num_valid`` are this process's part of each batch.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be ≥ 1, got {batch_size}.")
    num_examples = len(dataset)
    for start in range(0, num_examples, batch_size):
        indices = np.minimum(np.arange(start, start + batch_size), num_examples - 1)
        valid = np.arange(start, start + batch_size) < num_examples
        inputs, labels = make_batch(dataset, indices, augment=False, seed=0, epoch=0, step=0, rows=rows)
        yield inputs, labels, int(valid[rows].sum())


_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(iterator: Iterable[Any], size: int = 2, transfer: Callable[[Any], Any] | None = None
             ) -> Iterator[Any]:
    """Yield the items of ``iterator``, produced by a background thread that runs ``size`` items
    ahead and applies ``transfer`` (e.g. ``lambda b: jax.device_put(b, sharding)``) to each.

    An exception in the producer (or in ``transfer``) is raised here, at the item where it
    happened. Closing this generator early (``break`` out of a loop, ``.close()``) stops the
    thread and closes ``iterator``.
    """
    if size < 1:
        raise ValueError(f"`size` must be ≥ 1 items, got {size}.")
    items: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    source = iter(iterator)

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(transfer(item) if transfer is not None else item):
                    return
            put(_DONE)
        except BaseException as error:  # noqa: BLE001 - re-raised in the consumer
            put(_Failure(error))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="safjax-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=10.0)
