"""Spike propagation: the plain spiking network (docs/methods.md §1), for a `Network` or any step
model (`safjax.engine`).

This is BPTT's forward, the spike-representation forward, and the inference network that
SAF/OTTT-trained parameters run in (additions of spikes only). The step itself is the engine's
(`safjax.engine.steps.network_step`): one simulator for every method and every model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from safjax import engine
from safjax.engine import steps

Array = jax.Array
NetworkState = tuple  # one neuron state per spiking layer (cell), in order (safjax.neurons.base)


def init_network_state(net, batch_size: int, dtype=jnp.float32) -> NetworkState:
    """Every layer's neuron state at t = 0 (u = 0, s = 0 for LIF)."""
    return steps.init_network_state(engine.as_step_model(net), batch_size, dtype)


def init_traces(net, batch_size: int, dtype=jnp.float32) -> tuple:
    """â = 0 for the input and every layer: ``(â^0, â^1, ..., â^N)``, each [B, *shape]."""
    model = engine.as_step_model(net)
    shapes = (model.input_shape,) + tuple(model.cell_shapes)
    return tuple(jnp.zeros((batch_size,) + tuple(shape), dtype) for shape in shapes)


def network_step(net, params, state: NetworkState, x_t: Array, stop_state_gradient: bool = False):
    """One time step: ``(state[t-1], x[t] [B, ...]) -> (state[t], (o[t] [B, C], spikes))``.

    Feedback paths read the source layer's spikes of step t − 1.
    """
    return steps.network_step(engine.as_step_model(net), params, state, x_t, stop_state_gradient)


def run(net, params, inputs: Array, unroll: int | bool = 1) -> tuple[Array, tuple[Array, ...]]:
    """Simulate all T steps: inputs [T, B, ...] → (outputs [T, B, C], spikes per layer [T, B, ...])."""
    return steps.run(engine.as_step_model(net), params, inputs, unroll)
