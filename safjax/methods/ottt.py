"""OTTT's per-step forward and loss (docs/methods.md §3), shared by `ottt_a` and `ottt_o`.

State per layer: the membrane u^l and spikes s^l (detached every step) and the presynaptic trace
â^l[t] = λ â^l[t−1] + s^l[t] (never differentiated); â^0 traces the input. At step t every
synaptic operator is evaluated twice, as published — on spikes for the value and on traces for
the gradient:

    I^l = op(â) + stop_gradient(op(s) − op(â)),   op(â) with its bias weighted by c_t

so ∇_{W_l} L[t] = δ^l[t]·â^{l−1}[t]ᵀ and ∇_{b_l} L[t] = δ^l[t]·c_t, with δ^l[t] = ∂L[t]/∂u^l[t]
through the spatial path only. The readout is treated the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from safjax import train_config as config_lib
from safjax import losses
from safjax import network as network_lib
from safjax import neurons as neurons_lib
from safjax import simulate
from safjax.methods import base

Array = jax.Array
sg = jax.lax.stop_gradient


class OTTTState(NamedTuple):
    neurons: tuple  # tuple[LIFState, ...] per layer, [B, *shape_l]
    traces: tuple  # (â^0, â^1, ..., â^N) at t − 1, [B, *shape]
    c: Array  # [] c_{t−1} = Σ_{k<t−1} λ^k


def validate(net: network_lib.Network, method: str) -> float:
    """OTTT needs linear operators, neurons with a fixed threshold (the trace form) and one λ;
    returns λ."""
    network_lib.require_linear_operators(net, method)
    neurons_lib.require(net, neurons_lib.TRACES, method)
    return network_lib.uniform_leak(net, method)


def init_state(net: network_lib.Network, batch_size: int, dtype=jnp.float32) -> OTTTState:
    return OTTTState(
        simulate.init_network_state(net, batch_size, dtype),
        simulate.init_traces(net, batch_size, dtype),
        jnp.zeros((), dtype),
    )


def _dual(value: Array, gradient_path: Array) -> Array:
    """Forward value of ``value``, gradient of ``gradient_path``."""
    return gradient_path + sg(value - gradient_path)


def make_step_loss(
    net: network_lib.Network, config: config_lib.TrainConfig, num_steps: int, method: str = "ottt"
):
    """``step_loss(params, state, x_t, labels) -> (L[t], (state, o[t], rates[t]))``."""
    leak = validate(net, method)

    def step_loss(params, state: OTTTState, x_t: Array, labels: Array):
        c = leak * state.c + 1.0
        spikes, traces = [x_t], [leak * state.traces[0] + x_t]
        neurons = []
        for index, (layer, layer_params) in enumerate(
            zip(net.layers, params["layers"]), start=1
        ):

            def spike_of(source, index=index):
                return spikes[source] if source < index else state.neurons[source - 1].s

            def trace_of(source, index=index):
                return traces[source] if source < index else state.traces[source]

            current_value = network_lib.layer_current(layer, layer_params, spike_of, 1.0)
            current_trace = network_lib.layer_current(layer, layer_params, trace_of, c)
            current = _dual(current_value, current_trace)
            neuron_state, s = layer.neuron.step(state.neurons[index - 1], current, stop_state_gradient=True)
            neurons.append(neuron_state)
            spikes.append(s)
            traces.append(leak * sg(state.traces[index]) + s)
        output = _dual(
            network_lib.readout(net, params, spikes[-1], 1.0),
            network_lib.readout(net, params, traces[-1], c),
        )
        loss = losses.ce_mse_loss(output, labels, config.mse_weight) / num_steps
        new_state = OTTTState(tuple(neurons), tuple(sg(a) for a in traces), c)
        return loss, (new_state, output, base.mean_rates(spikes[1:]))

    return step_loss


def forward(net: network_lib.Network, params, inputs, labels, unroll: int | bool = 1):
    """OTTT's forward alone (both evaluations of every operator): inputs [T, B, ...] → o [T, B, C]."""
    step_loss = make_step_loss(net, config_lib.TrainConfig(), inputs.shape[0])

    def body(state, x_t):
        _, (state, output, _) = step_loss(params, state, x_t, labels)
        return state, output

    return jax.lax.scan(body, init_state(net, inputs.shape[1], inputs.dtype), inputs, unroll=unroll)[1]


def step_forward(net: network_lib.Network, params, x_t, labels):
    """One OTTT step from the initial state (synaptic-operation counting)."""
    step_loss = make_step_loss(net, config_lib.TrainConfig(), 1)
    return step_loss(params, init_state(net, x_t.shape[0], x_t.dtype), x_t, labels)
