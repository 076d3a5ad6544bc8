"""The one error type of an example that cannot be read (a damaged, empty or wrongly sized file):
`safjax.input_pipeline.make_batch` either stops on it or, with ``--skip_bad_examples``, puts the
next readable example in its place and reports it."""

from __future__ import annotations

SKIP_HINT = "pass --skip_bad_examples to skip such files (each is logged and listed in results.json)"


class BadExample(ValueError):
    """Example ``index`` of a data set cannot be read: ``detail`` says which file (or record)
    and why, in one line; the message adds how to skip such examples."""

    def __init__(self, index: int, detail: str):
        super().__init__(f"{detail}; {SKIP_HINT}.")
        self.index, self.detail = int(index), detail

    def __reduce__(self):  # raised in a data worker process, re-raised in the trainer
        return BadExample, (self.index, self.detail)
