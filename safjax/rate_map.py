"""The spike-representation rate map and its pseudo-derivative (docs/methods.md §4, §6).

Spike representation reads a spiking layer as the map from its input to its λ-weighted firing
rate, a = clamp(x / V_th, 0, 1), and differentiates that map:

    ∂a/∂x = (1/V_th)·1[0 < x/V_th < 1]        strictly inside the band; 0 on its edges and outside

`band_clip` is that clamp with that derivative. `jnp.clip` is not: its gradient is 1/2 at a
bound (``x`` exactly 0 — a neuron that receives nothing — or exactly at the top), which would
pass an undocumented half gradient through silent layers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

# SAF-F's and SR's default global gradient-norm clip (docs/methods.md §4.5): spike representation's
# gradient grows toward the input of deep nets (VGG-11 sWS: 30–300× OTTT's in the first layers), and
# unclipped at the CIFAR preset's SGD 0.1 it saturates every layer within a few updates
# (docs/results.md).
SPIKE_REPRESENTATION_GRAD_CLIP = 0.3


@jax.custom_jvp
def band_clip(x: Array, upper: Array | float) -> Array:
    """clip(x, 0, upper), elementwise, with derivative 1[0 < x < upper] in ``x`` (0 at both
    edges) and none in ``upper`` (a constant: 1 for rates, c_T for accumulations)."""
    return jnp.clip(x, 0.0, upper)


@band_clip.defjvp
def _band_clip_jvp(primals, tangents):
    x, upper = primals
    dx, _ = tangents
    inside = (x > 0) & (x < upper)
    return band_clip(x, upper), jnp.where(inside, dx, jnp.zeros_like(dx))
