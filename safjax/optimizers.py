"""The trainer's optimizers: Adam or SGD with momentum, constant or per-epoch cosine schedule."""

from __future__ import annotations

import jax.numpy as jnp
import optax


def make_optimizer(name: str, learning_rate: float, momentum: float, schedule: str,
                   epochs: int, updates_per_epoch: int, grad_clip: float = 0.0) -> optax.GradientTransformation:
    """``name`` ("adam" | "sgd") at ``learning_rate``; ``schedule="cosine"`` decays it to 0 over
    ``epochs``, stepping once per epoch like the reference CIFAR setups (docs/methods.md §8), so methods that
    update every time step (SAF-E, OTTT_O) follow the same per-epoch curve as the others.
    ``updates_per_epoch`` is the number of optimizer updates in one epoch. ``grad_clip > 0`` first
    rescales each gradient to a global norm of at most ``grad_clip`` (0 = off)."""
    if not grad_clip >= 0:
        raise ValueError(f"`grad_clip` must be ≥ 0 (0 = off), got {grad_clip!r}.")
    optimizer = _base_optimizer(name, learning_rate, momentum, schedule, epochs, updates_per_epoch)
    return optax.chain(optax.clip_by_global_norm(grad_clip), optimizer) if grad_clip else optimizer


def _base_optimizer(name, learning_rate, momentum, schedule, epochs, updates_per_epoch):
    if schedule == "cosine":
        cosine = optax.cosine_decay_schedule(learning_rate, decay_steps=epochs)
        rate = lambda count: cosine(jnp.floor_divide(count, updates_per_epoch))  # noqa: E731
    elif schedule == "constant":
        rate = learning_rate
    else:
        raise ValueError(f"`schedule` must be 'constant' or 'cosine', got {schedule!r}.")
    if name == "adam":
        return optax.adam(rate)
    if name == "sgd":
        return optax.sgd(rate, momentum=momentum or None)
    raise ValueError(f"`optimizer` must be 'adam' or 'sgd', got {name!r}.")
