"""Warnings for a run that is not learning, so a diverged or frozen net never finishes silently.

Two symptoms, checked after every epoch on the run's history (one dict per epoch with
``train_loss``, ``test_accuracy`` and per-layer ``firing_rates``):

- **diverging**: an epoch's mean training loss is above ``DIVERGENCE_FACTOR`` × the smaller of
  the first minibatch's loss and ln C (a uniform guess's cross-entropy; the first minibatch of a
  method that updates every time step may already have diverged), e.g. a too-large learning rate
  whose loss climbs without ever reaching NaN;
- **frozen at chance**: from epoch 2 on, the test accuracy is within ``CHANCE_MARGIN`` of 1/C and
  no layer's firing rate moved by more than ``FROZEN_RATE_CHANGE`` since the previous epoch —
  the spiking layers are saturated or silent and only the readout still moves (how SAF-F failed
  on CIFAR-10 at the paper's learning rate; docs/results.md).
"""

from __future__ import annotations

import math

DIVERGENCE_FACTOR = 1.1
CHANCE_MARGIN = 0.02
FROZEN_RATE_CHANGE = 1e-3
ADVICE = "lower --learning_rate or set --grad_clip"


def learning_warnings(history: list[dict], first_loss: float | None, num_classes: int) -> dict[str, str]:
    """``{kind: one-line warning}`` for the symptoms ``history`` shows (empty when it learns).

    ``first_loss`` is the first minibatch's training loss (None: not known, ln C alone is used).
    """
    warnings = {}
    uniform = math.log(num_classes)
    reference = uniform if first_loss is None else min(first_loss, uniform)
    for record in history:
        if record["train_loss"] > DIVERGENCE_FACTOR * reference:
            warnings["diverging"] = (
                f"warning: not learning — epoch {record['epoch']}'s training loss "
                f"{record['train_loss']:.4g} is above the untrained level {reference:.4g} "
                f"(min of the first minibatch's loss and ln {num_classes}): diverging; {ADVICE}.")
            break
    chance = 1.0 / num_classes
    for previous, record in zip(history, history[1:]):
        change = max((abs(a - b) for a, b in zip(record["firing_rates"], previous["firing_rates"])),
                     default=0.0)
        if record["test_accuracy"] <= chance + CHANCE_MARGIN and change < FROZEN_RATE_CHANGE:
            warnings["frozen"] = (
                f"warning: not learning — test accuracy {record['test_accuracy']:.4f} is at chance "
                f"(1/{num_classes}) after epoch {record['epoch']} and no layer's firing rate moved "
                f"since epoch {previous['epoch']} (max change {change:.1e}): the spiking layers are "
                f"frozen; {ADVICE}.")
            break
    return warnings
