"""The unreadable examples a run skipped (``--skip_bad_examples``), over its processes and attempts.

Each process reads only its own rows of every minibatch, so each sees only its own unreadable
files; `SkippedExamples.all` gathers them from every process, so that results.json and each
checkpoint list them all, and process 0 logs each once.
"""

from __future__ import annotations

import json
from typing import Callable, Iterable

import jax
import numpy as np


class SkippedExamples:
    """One-line reasons of the skipped examples (`safjax.datasets.bad_example.BadExample`), each
    logged once by ``log`` when first seen."""

    def __init__(self, log: Callable[[str], None], earlier: Iterable[str] = (), gather: bool = False):
        self.seen: set[str] = set(earlier)  # those of earlier attempts (logged by their process 0)
        self._log = log
        self._gather = gather and jax.process_count() > 1

    def note(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            if reason not in self.seen:
                self.seen.add(reason)
                self._log(f"skipped (--skip_bad_examples): {reason}")

    def all(self) -> list[str]:
        """The reasons, sorted; with ``gather`` (``--skip_bad_examples``) and several processes,
        every process's: then a collective, which every process calls at the same point of the run
        (a checkpoint, the results), and process 0 logs the others' reasons there."""
        if self._gather:
            self.note(every_process(sorted(self.seen)))
        return sorted(self.seen)


def every_process(strings: list[str]) -> list[str]:
    """The concatenation, in process order, of each process's ``strings`` (a collective)."""
    from jax.experimental import multihost_utils

    encoded = np.frombuffer(json.dumps(strings).encode(), np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.array([encoded.size], np.int32))).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[:encoded.size] = encoded
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [text for row, size in zip(gathered, lengths) for text in json.loads(bytes(row[:size]).decode())]
