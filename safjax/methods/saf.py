"""SAF's per-step forward (docs/methods.md §4), shared by `saf_e` and `saf_f`.

Propagate spike accumulations, not spikes. State per layer: â^l[t−1] only.

    Û^l[t] = op_l(â^{l−1}[t]) with bias weighted by c_t           (one evaluation per operator)
    s^l[t] = H(Û^l[t] − V_th (λ â^l[t−1] + 1))                    (≡ H(u^l[t] − V_th) exactly)
    â^l[t] = λ â^l[t−1] + s^l[t]
    o[t]   = Û^o[t] − λ Û^o[t−1]                                  (= W_o s^N[t] + b_o in value)

SAF-E's gradient: everything from t−1 is constant; ∂â/∂Û is the surrogate at the argument of H.
SAF-F's final step (``final=True``) uses the spike-representation pseudo-derivative instead,

    ∂â^l[T]/∂Û^l[T] = (1/V_th)·1[0 < Û^l[T]/c_T < V_th],

implemented as `rate_map.band_clip(Û/V_th, c_T)` (derivative 0 on the band's edges). With this
1/V_th convention ∇SAF-F equals ∇SR exactly (constant 1; the SAF paper's convention drops the 1/V_th, giving V_th·∇SR).

Memory: the only per-layer residual SAF-E keeps for its backward pass is the surrogate derivative
h(z) (`_spike`); the conv inputs â^{l−1}[t] are the new state, live anyway. See `_spike` for why
it is computed in the forward pass.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from safjax import network as network_lib
from safjax import neurons as neurons_lib
from safjax import rate_map
from safjax import simulate

Array = jax.Array
sg = jax.lax.stop_gradient


def _spike_value(surrogate, z: Array) -> Array:
    return surrogate(z)


def _spike_fwd(surrogate, z: Array):
    # The residual is the surrogate derivative h(z) itself, computed here, in the forward pass.
    # Left to itself XLA fuses a cheap elementwise residual (z, or h(z)) into its backward
    # consumer and recomputes it there from z's inputs, which keeps both Û^l[t] and â^l[t−1]
    # (a copy of the loop state) alive until the backward pass: two activations per layer
    # instead of one. Two things make h(z) a single buffer written in the forward pass:
    # - `optimization_barrier` stops fusion across it where XLA honours barriers until
    #   scheduling (GPU, TPU); XLA:CPU strips barriers before fusion;
    # - the spike value reads h(z) (s + 0·h, exact: h is finite and s ∈ {0, 1}), so h has a
    #   forward consumer; XLA does not duplicate an expensive producer (the sigmoid's
    #   logistic, atan's divide) into two consumers, so it materialises h once, there. (The
    #   rectangle's and triangle's derivatives are cheap: XLA:CPU still recomputes them, as
    #   before.) A NaN z (a diverged run) now makes s NaN instead of 0.
    # The gradient is unchanged bit for bit: the backward multiplies g by the same h(z).
    derivative = jax.lax.optimization_barrier(surrogate.derivative(z))
    s = surrogate(z)
    return s + jnp.zeros((), s.dtype) * derivative.astype(s.dtype), derivative


def _spike_bwd(surrogate, derivative: Array, g: Array):
    return (g * derivative.astype(g.dtype),)


# H(z) with the surrogate's gradient (as ``surrogate(z)``), keeping h(z) as its residual.
_spike = jax.custom_vjp(_spike_value, nondiff_argnums=(0,))
_spike.defvjp(_spike_fwd, _spike_bwd)


class SAFState(NamedTuple):
    traces: tuple  # (â^0, â^1, ..., â^N) at t − 1, [B, *shape]
    readout: Array  # [B, C] Û^o[t − 1]
    c: Array  # [] c_{t−1}


def validate(net: network_lib.Network, method: str) -> float:
    """SAF needs linear operators, neurons with the accumulation identity (fixed threshold, soft
    reset) and one λ; returns λ."""
    network_lib.require_linear_operators(net, method)
    neurons_lib.require(net, neurons_lib.ACCUMULATION, method)
    return network_lib.uniform_leak(net, method)


def init_state(net: network_lib.Network, batch_size: int, dtype=jnp.float32) -> SAFState:
    return SAFState(
        simulate.init_traces(net, batch_size, dtype),
        jnp.zeros((batch_size, net.num_classes), dtype),
        jnp.zeros((), dtype),
    )


def saf_step(
    net: network_lib.Network, leak: float, params, state: SAFState, x_t: Array, final: bool = False
) -> tuple[SAFState, tuple[Array, Array, tuple[Array, ...]]]:
    """One SAF step → ``(state[t], (o[t] [B, C], Û^o[t] [B, C], spikes per layer))``.

    ``final=True`` gives the SAF-F pseudo-derivative at this step (see the module docstring).
    """
    c = leak * state.c + 1.0
    traces = [leak * state.traces[0] + x_t]
    spikes = []
    for index, (layer, layer_params) in enumerate(zip(net.layers, params["layers"]), start=1):

        def trace_of(source, index=index):
            return traces[source] if source < index else state.traces[source]

        potential = network_lib.layer_current(layer, layer_params, trace_of, c)
        threshold = layer.neuron.threshold
        previous = sg(state.traces[index])
        z = potential - threshold * (leak * previous + 1.0)
        # final: this step's gradient takes the rate path below, the surrogate's is discarded.
        s = layer.neuron.surrogate(z) if final else _spike(layer.neuron.surrogate, z)
        trace = leak * previous + s
        if final:
            rate_path = rate_map.band_clip(potential / threshold, c)
            trace = rate_path + sg(trace - rate_path)
        traces.append(trace)
        spikes.append(sg(s))
    potential_out = network_lib.readout(net, params, traces[-1], c)
    output = potential_out - leak * sg(state.readout)
    new_state = SAFState(tuple(sg(a) for a in traces), sg(potential_out), c)
    return new_state, (output, potential_out, tuple(spikes))


def forward(net: network_lib.Network, params, inputs, labels, unroll: int | bool = 1):
    """SAF's forward alone: inputs [T, B, ...] → o [T, B, C] (one evaluation per operator)."""
    del labels
    leak = validate(net, "saf")
    body = lambda state, x_t: saf_step(net, leak, params, state, x_t)  # noqa: E731
    return jax.lax.scan(body, init_state(net, inputs.shape[1], inputs.dtype), inputs, unroll=unroll)[1][0]


def step_forward(net: network_lib.Network, params, x_t, labels):
    """One SAF step from the initial state (synaptic-operation counting)."""
    del labels
    return saf_step(net, validate(net, "saf"), params, init_state(net, x_t.shape[0], x_t.dtype), x_t)
