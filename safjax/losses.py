"""Classification losses on readout logits (docs/methods.md §1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


def ce_mse_loss(logits: Array, labels: Array, mse_weight: float = 0.05) -> Array:
    """OTTT's loss: (1 − γ)·CE(o, y) + γ·MSE(o, onehot(y)), averaged over the batch.

    logits: [B, C]; labels: [B] int. MSE is the mean over batch and classes (PyTorch's
    ``mse_loss``). γ = ``mse_weight``; γ = 0 is plain cross-entropy.
    """
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    if mse_weight == 0.0:
        return ce
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    mse = jnp.mean((logits - onehot) ** 2)
    return (1.0 - mse_weight) * ce + mse_weight * mse
