"""The four architectures every identity is swept over (docs/methods.md §5), with parameters and inputs
chosen so that every layer fires at a moderate rate (an identity on silent layers proves nothing).

    mlp       input 12 → 16 → 12 → readout 5
    conv      8×8×2 → conv 4 → avg-pool, scaled-WS conv 6 → ×2.74, global pool → readout 5
    feedback  input 12 → 16 (+ feedback from layer 3 at t−1) → 12 → 10 → readout 5
    skip      input 12 → 16 → 16 → 12 (+ skip from layer 1 and from the input) → readout 5
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import safjax
from safjax import ops

ARCHITECTURES = ("mlp", "conv", "feedback", "skip")
NUM_CLASSES = 5
BATCH = 3


def _layer(paths, neuron):
    return safjax.SpikingLayer(tuple(safjax.Path(s, tuple(o)) for s, o in paths), neuron)


def build(architecture: str, leak: float = 0.5, threshold: float = 1.0, **neuron_kwargs):
    """A `safjax.Network` of the named architecture with the given neuron parameters."""
    neuron = safjax.lif(leak, threshold, **neuron_kwargs)
    readout = (ops.Dense(NUM_CLASSES),)
    if architecture == "mlp":
        layers = [_layer([(0, [ops.Dense(16)])], neuron), _layer([(1, [ops.Dense(12)])], neuron)]
        return safjax.Network((12,), layers, readout)
    if architecture == "conv":
        layers = [
            _layer([(0, [ops.Conv(4, 3)])], neuron),
            _layer([(1, [ops.AvgPool(2), ops.ScaledWSConv(6, 3)])], neuron),
        ]
        return safjax.Network((8, 8, 2), layers, (ops.Scale(2.74), ops.GlobalAvgPool()) + readout)
    if architecture == "feedback":
        layers = [
            _layer([(0, [ops.Dense(16)]), (3, [ops.Dense(16)])], neuron),
            _layer([(1, [ops.Dense(12)])], neuron),
            _layer([(2, [ops.Dense(10)])], neuron),
        ]
        return safjax.Network((12,), layers, readout)
    if architecture == "skip":
        layers = [
            _layer([(0, [ops.Dense(16)])], neuron),
            _layer([(1, [ops.Dense(16)])], neuron),
            _layer([(2, [ops.Dense(12)]), (1, [ops.Dense(12)]), (0, [ops.Scale(0.5), ops.Dense(12)])], neuron),
        ]
        return safjax.Network((12,), layers, readout)
    raise ValueError(architecture)


def params_and_data(net, num_steps: int, seed: int = 0, threshold: float = 1.0):
    """float64 params with non-zero biases and time-varying inputs [T, B, ...], labels [B]."""
    key_params, key_bias, key_x, key_y = jax.random.split(jax.random.PRNGKey(seed), 4)
    params = safjax.init_params(net, key_params, jnp.float64)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key_bias, len(leaves))
    new_leaves = []
    for (path, leaf), key in zip(leaves, keys):
        name = path[-1].key
        if name == "bias":
            leaf = 0.2 * threshold * jax.random.normal(key, leaf.shape, leaf.dtype)
        elif name == "kernel":
            leaf = 1.5 * leaf * threshold
        elif name == "gain":
            leaf = leaf * (3.0 + 0.5 * jax.random.normal(key, leaf.shape, leaf.dtype))
        new_leaves.append(leaf)
    params = jax.tree_util.tree_unflatten(treedef, new_leaves)
    shape = (num_steps, BATCH) + net.input_shape
    inputs = 1.5 * threshold * jax.random.uniform(key_x, shape, jnp.float64)
    labels = jax.random.randint(key_y, (BATCH,), 0, NUM_CLASSES)
    return params, inputs, labels
