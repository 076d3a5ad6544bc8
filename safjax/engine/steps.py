"""The per-step functions every method is built from, for any step model (docs/methods.md §10).

Each runs the model's own step function once (twice for OTTT: its value and its gradient pass)
with the cells in one mode (`modes`):

    network_step   the spiking network, state[t−1] → state[t], (o[t], spikes)     BPTT, TBPTT, SLTT
    saf_step       SAF's step on accumulations (one evaluation per operator)     SAF-E, SAF-F
    ottt_step      OTTT's step: a spiking value pass, a trace gradient pass      OTTT_A, OTTT_O
    rate_logits    SR's rate map at measured rates                               SR
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from safjax.engine import modes, runtime as runtime_lib

Array = jax.Array
sg = jax.lax.stop_gradient


def init_cell_states(model, mode: modes.Mode, batch_size: int, dtype=jnp.float32) -> tuple:
    """Every cell's ``mode`` state at t = 0, in cell order."""
    return tuple(mode.init(neuron, (batch_size,) + tuple(shape), dtype)
                 for neuron, shape in zip(model.neurons, model.cell_shapes))


def init_input_trace(model, batch_size: int, dtype=jnp.float32) -> Array:
    """â^0 = 0, [B, *input_shape]."""
    return jnp.zeros((batch_size,) + tuple(model.input_shape), dtype)


def run_step(model, params, mode: modes.Mode, states: tuple, x_t: Array, context: modes.Context,
             model_state=None):
    """The model's step with its cells in ``mode``: (o[t] [B, C], new states, spikes, currents,
    the model's own state after the step). ``model_state``: the model's own state before it (running
    statistics, `carries_state`; None for a model without)."""
    runtime = runtime_lib.Runtime(mode, model.neurons, states, context, model.cell_names)
    runtime.model_state = model_state
    with runtime_lib.activate(runtime):
        output = model.apply(params, x_t, runtime)
    return (output,) + runtime.finish() + (runtime.new_model_state,)


class ModelState(NamedTuple):
    """The model's own state, carried after the cells' in the spiking state of a model that
    `carries_state` (a Flax model whose BatchNorm updates running statistics every step)."""

    stats: tuple  # the running statistics, in the model's `stat_paths` order


def carries_state(model) -> bool:
    return getattr(model, "carries_state", False)


def final_model_state(model, state: tuple):
    """The model's own state at the end of a spiking run (None for a model without)."""
    return state[-1].stats if carries_state(model) else None


def trace_scale(model, c):
    """What a trace carried in SAF's or OTTT's state is divided by: c (c_{t−1} in a state at
    t − 1) in a model fed normalised signals (`modes`), 1 in a bias-scaling one."""
    return 1.0 if model.scales_bias else c


def _accumulation_context(model, c, previous_c, **kwargs) -> modes.Context:
    """c_t as the bias weight of a bias-scaling model, or as the signal scale of any other."""
    if model.scales_bias:
        return modes.Context(c=c, bias_scale=c, **kwargs)
    return modes.Context(c=c, signal_scale=c, previous_signal_scale=previous_c, **kwargs)


def input_signal(leak: float, carried: Array, x_t: Array, previous_scale, scale) -> Array:
    """â^0[t] = λ â^0[t−1] + x[t] divided by ``scale`` (this step's `trace_scale`), from the input
    trace ``carried`` at t − 1 in ``previous_scale`` (the scale of this step's signals and of the
    next state)."""
    return (leak * carried * previous_scale + x_t) / scale


# The spiking network (docs/methods.md §1).

def network_step(model, params, state: tuple, x_t: Array, stop_state_gradient: bool = False):
    """One step: ``(state[t−1], x[t] [B, ...]) -> (state[t], (o[t] [B, C], spikes per cell))``;
    ``stop_state_gradient`` detaches state[t−1] inside every neuron (OTTT, SLTT)."""
    mode, model_state = modes.Spiking(stop_state_gradient), None
    if carries_state(model):
        state, model_state = state[:-1], state[-1].stats
    output, state, spikes, _, model_state = run_step(model, params, mode, state, x_t, modes.Context(), model_state)
    if carries_state(model):
        state = state + (ModelState(model_state),)
    return state, (output, spikes)


def init_network_state(model, batch_size: int, dtype=jnp.float32) -> tuple:
    """Every cell's neuron state at t = 0 (u = 0, s = 0 for LIF), then, for a model that
    `carries_state`, its own (`ModelState`: the running statistics the step starts from)."""
    cells = init_cell_states(model, modes.Spiking(), batch_size, dtype)
    return cells + (ModelState(model.initial_model_state()),) if carries_state(model) else cells


def run(model, params, inputs: Array, unroll: int | bool = 1):
    """All T steps: inputs [T, B, ...] → (outputs [T, B, C], spikes per cell [T, B, ...])."""
    state = init_network_state(model, inputs.shape[1], inputs.dtype)
    _, (outputs, spikes) = jax.lax.scan(lambda s, x: network_step(model, params, s, x), state, inputs,
                                        unroll=unroll)
    return outputs, spikes


# SAF (docs/methods.md §4).

class SAFState(NamedTuple):
    traces: tuple  # (â^0, â^1, ..., â^N) at t − 1, [B, *shape]: the input's, then every cell's;
    #                divided by c_{t−1} in a normalised model (`trace_scale`)
    readout: Array  # [B, C] Û^o[t − 1]
    c: Array  # [] c_{t−1}


def init_saf_state(model, batch_size: int, dtype=jnp.float32) -> SAFState:
    cells = init_cell_states(model, modes.Accumulating(), batch_size, dtype)
    return SAFState((init_input_trace(model, batch_size, dtype),) + cells,
                    jnp.zeros((batch_size, model.num_classes), dtype), jnp.zeros((), dtype))


def saf_step(model, leak: float, params, state: SAFState, x_t: Array, final: bool = False):
    """One SAF step → ``(state[t], (o[t] [B, C], Û^o[t] [B, C], spikes per cell))``:

        â^0[t] = λ â^0[t−1] + x[t];  every cell accumulates (`modes.Accumulating`);
        o[t] = Û^o[t] − λ Û^o[t−1]   (= W_o s^N[t] + b_o in value)

    ``final=True`` gives SAF-F's pseudo-derivative at this step (docs/methods.md §4.4)."""
    c = leak * state.c + 1.0
    context = _accumulation_context(model, c, state.c, final=final)
    input_signal_t = input_signal(leak, state.traces[0], x_t, context.previous_signal_scale,
                                  context.signal_scale)
    output, cells, spikes, _, _ = run_step(model, params, modes.Accumulating(), state.traces[1:],
                                        input_signal_t, context)
    potential_out = output * context.signal_scale
    new_state = SAFState((sg(input_signal_t),) + cells, sg(potential_out), c)
    return new_state, (potential_out - leak * sg(state.readout), potential_out, spikes)


# OTTT (docs/methods.md §3).

class OTTTState(NamedTuple):
    neurons: tuple  # every cell's neuron state at t − 1
    traces: tuple  # (â^0, â^1, ..., â^N) at t − 1, [B, *shape] (in `trace_scale`, as SAF's)
    c: Array  # [] c_{t−1}


def init_ottt_state(model, batch_size: int, dtype=jnp.float32) -> OTTTState:
    zeros = init_cell_states(model, modes.Accumulating(), batch_size, dtype)
    return OTTTState(init_network_state(model, batch_size, dtype),
                     (init_input_trace(model, batch_size, dtype),) + zeros, jnp.zeros((), dtype))


def _dual(value: Array, gradient_path: Array) -> Array:
    """Forward value of ``value``, gradient of ``gradient_path``."""
    return gradient_path + sg(value - gradient_path)


def ottt_step(model, leak: float, params, state: OTTTState, x_t: Array):
    """One OTTT step → ``(state[t], (o[t] [B, C], spikes per cell))``. Every operator is
    evaluated twice, as published: on spikes for the value (a spiking pass, no gradient) and on
    traces for the gradient (`modes.Trace`), so ∇_W L[t] = δ[t]·â[t]ᵀ and ∇_b L[t] = δ[t]·c_t."""
    c = leak * state.c + 1.0
    value_out, _, _, value_currents, _ = run_step(
        model, sg(params), modes.Spiking(stop_state_gradient=True), state.neurons, x_t, modes.Context())
    context = _accumulation_context(model, c, state.c, value_currents=value_currents)
    input_signal_t = input_signal(leak, state.traces[0], x_t, context.previous_signal_scale,
                                  context.signal_scale)
    cells = tuple(zip(state.neurons, state.traces[1:]))
    trace_out, cells, spikes, _, _ = run_step(model, params, modes.Trace(), cells, input_signal_t, context)
    output = _dual(value_out, trace_out * context.signal_scale)
    neurons, traces = zip(*cells) if cells else ((), ())
    return OTTTState(tuple(neurons), (sg(input_signal_t),) + tuple(traces), c), (output, spikes)


# Spike representation (docs/methods.md §6).

class RateState(NamedTuple):
    neurons: tuple  # every cell's neuron state
    traces: tuple  # (â^0, ..., â^N) at t
    previous_traces: tuple  # (â^0, ..., â^N) at t − 1
    c: Array  # [] c_t


def init_rate_state(model, batch_size: int, dtype=jnp.float32) -> RateState:
    zeros = (init_input_trace(model, batch_size, dtype),) + init_cell_states(
        model, modes.Accumulating(), batch_size, dtype)
    return RateState(init_network_state(model, batch_size, dtype), zeros, zeros, jnp.zeros((), dtype))


def measure_step(model, leak: float, params, state: RateState, x_t: Array):
    """One step of the spiking network that also keeps every trace: → (state[t], (o[t], spikes))."""
    neurons, (output, spikes) = network_step(model, params, state.neurons, x_t)
    traces = tuple(leak * a + s for a, s in zip(state.traces, (x_t,) + spikes))
    return RateState(neurons, traces, state.traces, leak * state.c + 1.0), (output, spikes)


def rate_logits(model, params, state: RateState) -> Array:
    """Logits o [B, C] of the rate map at the measured rates a = â[T]/c_T (SR's graph)."""
    cells = tuple(zip(state.traces[1:], state.previous_traces[1:]))
    output, _, _, _, _ = run_step(model, params, modes.Rate(), cells, state.traces[0] / state.c,
                               modes.Context(c=state.c))
    return output
