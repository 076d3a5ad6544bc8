"""What a neuron cell does under each method (docs/methods.md §10.2).

A mode is a frozen dataclass with

    init(neuron, shape, dtype) -> state              a cell's state at t = 0, shape [B, ...]
    step(neuron, state, current, context, index) -> (state, signal, spikes)
                                                     one step: the current I[t] the model computed
                                                     for the cell → the signal it passes on, and
                                                     the spikes s[t] (for firing rates)
    previous(neuron, state, context) -> signal       the cell's signal at t − 1 (feedback paths)

Signals and currents of a model whose operators weight their biases by ``context.bias_scale``
(`safjax.Network`) are the raw ones; a model that does not (any Flax model) is fed *normalised*
signals — every signal divided by ``context.signal_scale`` = c_t — so that each affine operator
f(x) = W x + b gives f(â/c_t) = (W â + c_t b)/c_t = Û/c_t with one evaluation (§10.3): the cell
multiplies its current back by c_t and divides what it passes on by c_t. Such a cell also keeps
its trace normalised, â[t]/c_t: the state it carries and the signal it passes on are one array,
which the next operator's weight gradient reads — one buffer per cell, as in a `safjax.Network`,
not a raw trace and its normalised copy (docs/benchmarks.md (i)).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from safjax import rate_map

Array = jax.Array
sg = jax.lax.stop_gradient


class Context(NamedTuple):
    """One step's constants, shared by every cell.

    Attributes:
      c: [] c_t = Σ_{k<t} λ^k (1 in the spiking mode).
      bias_scale: what a bias-scaling front-end multiplies its biases by (c_t or 1).
      signal_scale: what signals are divided by (c_t for a normalised model, else 1).
      previous_signal_scale: the same at t − 1 (c_{t−1}; the scale the carried traces are in).
      final: SAF-F's final step (the rate path, docs/methods.md §4.4).
      value_currents: OTTT's trace pass: each cell's current of the value pass, in cell order.
    """

    c: Any = 1.0
    bias_scale: Any = 1.0
    signal_scale: Any = 1.0
    previous_signal_scale: Any = 1.0
    final: bool = False
    value_currents: tuple = ()


class Mode:
    """See the module docstring."""

    def init(self, neuron, shape, dtype):
        raise NotImplementedError

    def step(self, neuron, state, current, context: Context, index: int):
        raise NotImplementedError

    def previous(self, neuron, state, context: Context):
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Spiking(Mode):
    """The plain spiking network (§1): state = the neuron's own, signal = spikes.
    ``stop_state_gradient`` detaches the state at t − 1 inside the neuron (OTTT, SLTT)."""

    stop_state_gradient: bool = False

    def init(self, neuron, shape, dtype):
        return neuron.init_state(shape, dtype)

    def step(self, neuron, state, current, context, index):
        state, s = neuron.step(state, current, self.stop_state_gradient)
        return state, s, s

    def previous(self, neuron, state, context):
        return state.s


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
saf_spike = jax.custom_vjp(_spike_value, nondiff_argnums=(0,))
saf_spike.defvjp(_spike_fwd, _spike_bwd)


@dataclasses.dataclass(frozen=True)
class Accumulating(Mode):
    """SAF (docs/methods.md §4): state = â[t−1] (detached), signal = â[t]; both normalised in a
    normalised model (â[t−1]/c_{t−1} and â[t]/c_t: the new state is the signal, detached).

        Û[t] = current · signal_scale,   s[t] = H(Û[t] − V_th (λ â[t−1] + 1)),   â[t] = λ â[t−1] + s[t]

    SAF-E's gradient: ∂â/∂Û is the surrogate at the argument of H. At SAF-F's final step
    (``context.final``) it is the spike-representation pseudo-derivative instead,
    ∂â[T]/∂Û[T] = (1/V_th)·1[0 < Û[T]/c_T < V_th] (`rate_map.band_clip`)."""

    def init(self, neuron, shape, dtype):
        return jnp.zeros(shape, dtype)

    def step(self, neuron, state, current, context, index):
        potential = current * context.signal_scale
        previous = sg(state) * context.previous_signal_scale
        z = potential - neuron.threshold * (neuron.leak * previous + 1.0)
        s = neuron.surrogate(z) if context.final else saf_spike(neuron.surrogate, z)
        trace = neuron.leak * previous + s
        if context.final:  # this step's gradient takes the rate path, the surrogate's is discarded
            rate_path = rate_map.band_clip(potential / neuron.threshold, context.c)
            trace = rate_path + sg(trace - rate_path)
        signal = trace / context.signal_scale
        return sg(signal), signal, sg(s)

    def previous(self, neuron, state, context):
        return _rescaled(state, context)


def _rescaled(carried: Array, context: Context) -> Array:
    """A trace carried from t − 1 (in its scale, c_{t−1}) in this step's scale c_t."""
    return carried * context.previous_signal_scale / context.signal_scale


@dataclasses.dataclass(frozen=True)
class Trace(Mode):
    """OTTT's gradient pass (docs/methods.md §3): state = (neuron state, â[t−1]), signal = â[t]
    (both normalised in a normalised model, as in `Accumulating`). The cell's current takes its
    value from the value pass (spikes, bias weight 1: ``context.value_currents``) and its gradient
    from this pass (traces, bias weight c_t):

        I = I_trace + sg(I_value − I_trace),   (state, s) = neuron.step(sg(state), I),   â = λ sg(â[t−1]) + s
    """

    def init(self, neuron, shape, dtype):
        return neuron.init_state(shape, dtype), jnp.zeros(shape, dtype)

    def step(self, neuron, state, current, context, index):
        neuron_state, previous = state
        current = current * context.signal_scale
        dual = current + sg(context.value_currents[index] - current)
        neuron_state, s = neuron.step(neuron_state, dual, stop_state_gradient=True)
        trace = neuron.leak * sg(previous) * context.previous_signal_scale + s
        signal = trace / context.signal_scale
        return (neuron_state, sg(signal)), signal, sg(s)

    def previous(self, neuron, state, context):
        return _rescaled(state[1], context)


@dataclasses.dataclass(frozen=True)
class Rate(Mode):
    """Spike representation's differentiable map (docs/methods.md §6) at measured rates: state =
    (â[T], â[T−1]) from the spiking run, ``context.c`` = c_T; the current is the rate map's input
    x = op(a^{l−1}) + b, the signal the measured rate â[T]/c_T with the derivative of
    clamp(x/V_th, 0, 1) (`rate_map.band_clip`)."""

    def init(self, neuron, shape, dtype):
        return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)

    def step(self, neuron, state, current, context, index):
        surrogate_rate = rate_map.band_clip(current / neuron.threshold, 1.0)
        measured = state[0] / context.c
        return state, sg(measured) + surrogate_rate - sg(surrogate_rate), None

    def previous(self, neuron, state, context):
        return sg(state[1] / context.c)
