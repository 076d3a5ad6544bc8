"""Input encodings: batch-major data → time-major network input [T, B, ...]."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def direct(images: Array, time_steps: int) -> Array:
    """Direct (constant-current) encoding: x[t] = image for every t; [B, ...] → [T, B, ...]."""
    if not isinstance(time_steps, int) or time_steps < 1:
        raise ValueError(f"`time_steps` must be an int ≥ 1, got {time_steps!r}.")
    return jnp.broadcast_to(images[None], (time_steps,) + images.shape)
