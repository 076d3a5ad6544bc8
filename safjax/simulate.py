"""Spike propagation through a `Network`: the plain LIF SNN (docs/methods.md §1).

This is BPTT's forward, the spike-representation forward, and the inference network that
SAF/OTTT-trained parameters run in (additions of spikes only).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from safjax import network as network_lib

Array = jax.Array
NetworkState = tuple  # one neuron state per spiking layer, in layer order (safjax.neurons.base)


def init_network_state(net: network_lib.Network, batch_size: int, dtype=jnp.float32) -> NetworkState:
    """Every layer's neuron state at t = 0 (u = 0, s = 0 for LIF)."""
    return tuple(
        layer.neuron.init_state((batch_size,) + shape, dtype)
        for layer, shape in zip(net.layers, net.layer_shapes)
    )


def init_traces(net: network_lib.Network, batch_size: int, dtype=jnp.float32) -> tuple:
    """â = 0 for the input and every layer: ``(â^0, â^1, ..., â^N)``, each [B, *shape]."""
    shapes = (net.input_shape,) + net.layer_shapes
    return tuple(jnp.zeros((batch_size,) + shape, dtype) for shape in shapes)


def network_step(
    net: network_lib.Network,
    params: network_lib.Params,
    state: NetworkState,
    x_t: Array,
    stop_state_gradient: bool = False,
) -> tuple[NetworkState, tuple[Array, tuple[Array, ...]]]:
    """One time step: ``(state[t-1], x[t] [B, ...]) -> (state[t], (o[t] [B, C], spikes))``.

    Feedback paths read the source layer's spikes of step t − 1.
    """
    spikes: list[Array] = [x_t]
    new_state = []
    for index, (layer, layer_params) in enumerate(zip(net.layers, params["layers"]), start=1):

        def signal_of(source: int, index=index) -> Array:
            return spikes[source] if source < index else state[source - 1].s

        current = network_lib.layer_current(layer, layer_params, signal_of, 1.0)
        layer_state, s = layer.neuron.step(state[index - 1], current, stop_state_gradient)
        new_state.append(layer_state)
        spikes.append(s)
    output = network_lib.readout(net, params, spikes[-1], 1.0)
    return tuple(new_state), (output, tuple(spikes[1:]))


def run(
    net: network_lib.Network, params: network_lib.Params, inputs: Array, unroll: int | bool = 1
) -> tuple[Array, tuple[Array, ...]]:
    """Simulate all T steps: inputs [T, B, ...] → (outputs [T, B, C], spikes per layer [T, B, ...])."""
    state = init_network_state(net, inputs.shape[1], inputs.dtype)

    def body(state, x_t):
        return network_step(net, params, state, x_t)

    _, (outputs, spikes) = jax.lax.scan(body, state, inputs, unroll=unroll)
    return outputs, spikes
