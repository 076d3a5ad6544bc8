"""Deterministic minibatches from a `Dataset`, split across processes: the rules `safjax.data_loader` runs.

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

import functools
from collections.abc import Iterator

import numpy as np

from safjax import augment as augment_lib
from safjax.datasets.bad_example import BadExample
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


MAX_SKIPPED_PER_BATCH = 16


def make_batch(dataset: Dataset, indices: np.ndarray, *, augment: bool, seed: int, epoch: int, step: int,
               rows: slice = slice(None), skipped: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gather, augment and normalise rows ``rows`` of the global minibatch ``indices [B]``.

    Static images: with ``augment and dataset.augment``, `augment.standard` parameters are drawn
    for all B examples from ``default_rng((seed, epoch, step))`` and this process's rows are
    augmented with theirs; then uint8 is scaled to [0, 1] and, when the data set has
    ``mean``/``std``, normalised per channel. Float images skip the scaling. Event frames
    (``dataset.temporal``) pass through as float32, unaugmented and unnormalised.

    With ``dataset.image_size`` S (images of varying sizes: the ImageNet recipe), each of this
    process's rows reads its example ``key`` (its index in ``dataset``) with
    ``dataset.inputs.read(key)`` and cuts an S×S view of it: `image_recipes.train_view` with
    ``default_rng((seed, epoch, key))`` when ``augment and dataset.augment`` (so an example's crop
    and flip depend on neither its batch nor the process and worker counts), else
    `image_recipes.eval_view`; then scaled and normalised as above.

    An example that cannot be read raises its `BadExample`; in a data set loaded with ``skip_bad``
    (``--skip_bad_examples``) the next example of the data set (key + 1) takes its place, with its
    label, and the one-line reason is appended to ``skipped`` when given (at most
    `MAX_SKIPPED_PER_BATCH` per batch).

    Returns ``(inputs [b, H, W, C] or [b, T, H, W, C] float32, labels [b] int32)`` with
    b the length of ``rows``.
    """
    local = np.array(np.asarray(indices)[rows])
    skipped = skipped if skipped is not None else []  # reasons this caller does not ask for are dropped
    for _ in range(MAX_SKIPPED_PER_BATCH + 1):
        try:
            inputs = _read(dataset, local, augment, seed, epoch)
            break
        except BadExample as bad:
            if not dataset.skip_bad:
                raise
            if bad.index not in local:
                raise ValueError(f"{dataset.name}: a BadExample names example {bad.index}, which this batch does "
                                 f"not read (its examples: {local.tolist()}): BadExample's index is the example's "
                                 "position in the data set.") from bad
            skipped.append(bad.detail)
            local[local == bad.index] = (bad.index + 1) % len(dataset)
    else:
        raise ValueError(f"more than {MAX_SKIPPED_PER_BATCH} unreadable examples among this process's rows of one "
                         f"batch of {dataset.name}: the data set is damaged (the last: {skipped[-1]}).")
    labels = dataset.labels[local].astype(np.int32, copy=False)
    if dataset.temporal:
        return inputs.astype(np.float32, copy=False), labels
    if augment and dataset.augment and dataset.image_size is None:
        rng = np.random.default_rng((seed, epoch, step))
        params = augment_lib.sample_standard(rng, len(np.asarray(indices)), dataset.inputs.shape[1:3])
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


def _read(dataset: Dataset, local: np.ndarray, augment: bool, seed: int, epoch: int) -> np.ndarray:
    """The examples ``local [b]`` as stored (``[b, ...]``), or, with ``dataset.image_size``, their
    S×S views (`make_batch`), in a few threads for large images."""
    if dataset.image_size is None:
        return dataset.inputs[local]
    from safjax import image_recipes
    from safjax.datasets.image_files import ordered_map

    size, train_views = dataset.image_size, augment and dataset.augment

    def view(key: int) -> np.ndarray:
        image = dataset.inputs.read(key)
        if train_views:
            return image_recipes.train_view(image, np.random.default_rng((seed, epoch, key)), size)
        return image_recipes.eval_view(image, size)

    inputs = np.empty((len(local), *dataset.inputs.shape[1:]), np.uint8)
    for row, image in enumerate(ordered_map(view, [int(key) for key in local], size * size)):
        inputs[row] = image
    return inputs


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full minibatches per epoch (the remainder is dropped); raise if there are none."""
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be ≥ 1, got {batch_size}.")
    if batch_size > num_examples:
        raise ValueError(f"`batch_size`={batch_size} exceeds the {num_examples} training examples: "
                         "use a smaller batch size.")
    return num_examples // batch_size


@functools.lru_cache(maxsize=2)
def _cached_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    return epoch_order(seed, epoch, num_examples)


class TrainBatch:
    """Global step ``k`` → ``(k, epoch, index_in_epoch, inputs, labels)``: this process's ``rows``
    of minibatch k of B = ``batch_size`` (global) examples, augmented (`make_batch`) when
    ``augment``. Picklable, so `safjax.data_loader` runs it in worker processes."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, augment: bool, rows: slice = slice(None)):
        self.dataset, self.batch_size, self.seed, self.augment, self.rows = dataset, batch_size, seed, augment, rows
        self.per_epoch = steps_per_epoch(len(dataset), batch_size)

    def __call__(self, step: int, skipped: list[str] | None = None) -> tuple[int, int, int, np.ndarray, np.ndarray]:
        step = int(step)
        epoch, index = divmod(step, self.per_epoch)
        order = _cached_order(self.seed, epoch, len(self.dataset))
        indices = order[index * self.batch_size:(index + 1) * self.batch_size]
        inputs, labels = make_batch(self.dataset, indices, augment=self.augment, seed=self.seed, epoch=epoch,
                                    step=step, rows=self.rows, skipped=skipped)
        return step, epoch, index, inputs, labels


class EvalBatch:
    """Evaluation batch ``i`` → ``(inputs, labels, num_valid)``: examples ``i·B .. (i+1)·B - 1``,
    unaugmented, the last batch padded with repeats of the last example (only its first
    ``num_valid`` rows are real); with ``rows``, this process's part of the batch and of
    ``num_valid``. Picklable, like `TrainBatch`."""

    def __init__(self, dataset: Dataset, batch_size: int, rows: slice = slice(None)):
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be ≥ 1, got {batch_size}.")
        self.dataset, self.batch_size, self.rows = dataset, batch_size, rows
        self.num_batches = -(-len(dataset) // batch_size)

    def __call__(self, i: int, skipped: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        count = len(self.dataset)
        positions = np.arange(int(i) * self.batch_size, (int(i) + 1) * self.batch_size)
        inputs, labels = make_batch(self.dataset, np.minimum(positions, count - 1), augment=False, seed=0,
                                    epoch=0, step=0, rows=self.rows, skipped=skipped)
        return inputs, labels, int((positions < count)[self.rows].sum())


def minibatches(dataset: Dataset, *, batch_size: int, seed: int, first_step: int, num_steps: int,
                augment: bool, rows: slice = slice(None)
                ) -> Iterator[tuple[int, int, int, np.ndarray, np.ndarray]]:
    """Yield ``(global_step, epoch, index_in_epoch, inputs, labels)`` (`TrainBatch`) for global
    steps ``first_step .. first_step + num_steps - 1``, in this thread (`safjax.data_loader` makes
    the same minibatches in worker processes)."""
    if first_step < 0 or num_steps < 0:
        raise ValueError(f"`first_step` and `num_steps` must be ≥ 0, got {first_step} and {num_steps}.")
    batch_of = TrainBatch(dataset, batch_size, seed, augment, rows)
    return (batch_of(step) for step in range(first_step, first_step + num_steps))


def eval_batches(dataset: Dataset, batch_size: int, rows: slice = slice(None)
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Yield `EvalBatch`'s ``(inputs, labels, num_valid)`` for every batch, covering every example
    once, in order, in this thread. Every batch has ``batch_size`` rows, so a jitted evaluation
    compiles once."""
    batch_of = EvalBatch(dataset, batch_size, rows)
    return (batch_of(i) for i in range(batch_of.num_batches))
