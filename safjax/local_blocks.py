"""Local blocks of spiking layers for temporally-truncated local BPTT (docs/methods.md §7).

The spiking layers are partitioned in order into blocks of B layers (the last may be smaller).
Block j holds layers a..b (1-based, as in `safjax.network`); at step t its layers read

    a source inside the block    as in the full network (spikes at t, or its own state at t − 1)
    source k < a                 s^k[t] recorded by an earlier block, detached (0: the input x[t])
    source k > b                 s^k[t − 1] of a later block (cross-block feedback), detached,
                                 recorded by a gradient-free forward of the window (`record_spikes`)

so every block's forward equals the full network's, and no gradient crosses a block boundary.
Every block but the last ends in an auxiliary classifier on its last layer's spikes:

    z_j = Dense(GAP(Σ_{t∈w} s^b[t] / K_w)),  GAP = mean over spatial axes (identity on vectors)

This module holds the static partition and the block forward; `safjax.methods.tbptt` holds the
losses and gradients.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from safjax import network as network_lib
from safjax import ops

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Block:
    """Consecutive spiking layers trained together by one loss."""

    layers: tuple[int, ...]  # 1-based layer numbers a..b
    inputs: tuple[int, ...]  # sources read at step t from outside the block (0 = the input)
    feedback: tuple[int, ...]  # later blocks' layers read at step t − 1
    outputs: tuple[int, ...]  # own layers that later blocks read at step t (recorded over a window)
    last: bool  # the last block uses the network's readout; the others an auxiliary classifier


def partition(net: network_lib.Network, block_size: int | None) -> tuple[Block, ...]:
    """Blocks of ``block_size`` layers in layer order (None, or ≥ the depth: one block)."""
    if block_size is not None and not (isinstance(block_size, int) and block_size >= 1):
        raise ValueError(f"`block_size` must be None or an int ≥ 1, got {block_size!r}.")
    num = net.num_layers
    size = num if block_size is None else min(block_size, num)
    groups = [tuple(range(a, min(a + size, num + 1))) for a in range(1, num + 1, size)]

    def sources(layers, keep) -> tuple[int, ...]:
        found = {p.source for l in layers for p in net.layers[l - 1].paths if keep(p.source)}
        return tuple(sorted(found))

    blocks = []
    for j, group in enumerate(groups):
        a, b = group[0], group[-1]
        later = tuple(l for g in groups[j + 1 :] for l in g)
        blocks.append(
            Block(
                layers=group,
                inputs=sources(group, lambda k: k < a),
                feedback=sources(group, lambda k: k > b),
                outputs=sources(later, lambda k: a <= k <= b),
                last=j == len(groups) - 1,
            )
        )
    return tuple(blocks)


def aux_head(net: network_lib.Network) -> ops.Dense:
    """The auxiliary classifier's dense layer (pooled features → class scores)."""
    return ops.Dense(net.num_classes)


def aux_features(net: network_lib.Network, block: Block) -> int:
    """Width of the pooled features the block's auxiliary classifier reads (channels)."""
    return net.layer_shapes[block.layers[-1] - 1][-1]


def global_pool(x: Array) -> Array:
    """Mean over the spatial axes: [B, H, W, C] → [B, C]; [B, F] unchanged."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1))) if x.ndim > 2 else x


def init_aux_params(net: network_lib.Network, block_size: int | None, key: Array, dtype) -> tuple:
    """One dense head's params (``{"kernel", "bias"}``) per block but the last, in block order."""
    blocks = partition(net, block_size)[:-1]
    keys = jax.random.split(key, max(len(blocks), 1))
    head = aux_head(net)
    return tuple(head.init(k, (aux_features(net, b),), dtype) for b, k in zip(blocks, keys))


def block_step(
    net: network_lib.Network, block: Block, layer_params, state: tuple, now: dict, prev: dict
) -> tuple[tuple, tuple]:
    """One step of one block: ``(state[t-1], now, prev) -> (state[t], spikes[t] per layer)``.

    ``layer_params`` and ``state`` hold the block's layers in order; ``now[k]`` is s^k[t] for
    every source k in ``block.inputs`` (x[t] for k = 0), ``prev[k]`` is s^k[t − 1] for every k
    in ``block.feedback``; both are read as given (the caller detaches them).
    """
    first, last = block.layers[0], block.layers[-1]
    spikes = dict(now)
    new_state = []
    for offset, index in enumerate(block.layers):

        def signal_of(source: int, index=index) -> Array:
            if source < index:
                return spikes[source]
            return state[source - first].s if source <= last else prev[source]

        layer = net.layers[index - 1]
        current = network_lib.layer_current(layer, layer_params[offset], signal_of, 1.0)
        layer_state, s = layer.neuron.step(state[offset], current)
        new_state.append(layer_state)
        spikes[index] = s
    return tuple(new_state), tuple(spikes[i] for i in block.layers)


def record_spikes(
    net: network_lib.Network, params, state: tuple, inputs: Array, layers, unroll=1
) -> dict:
    """Gradient-free forward of the whole network over ``inputs`` [K, B, ...] from ``state``:
    ``{k: s^k[t] stacked [K, B, ...]}`` for the requested layers, detached."""
    whole = Block(tuple(range(1, net.num_layers + 1)), (0,), (), tuple(layers), True)
    state, inputs = jax.lax.stop_gradient((state, inputs))
    params = jax.lax.stop_gradient(params)

    def step(state, x_t):
        state, spikes = block_step(net, whole, params["layers"], state, {0: x_t}, {})
        return state, {k: spikes[k - 1] for k in layers}

    _, recorded = jax.lax.scan(step, state, inputs, unroll=unroll)
    return recorded
