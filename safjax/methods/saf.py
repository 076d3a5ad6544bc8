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
h(z) (`safjax.engine.modes.saf_spike`); the conv inputs â^{l−1}[t] are the new state, live anyway.
The step is the engine's (`safjax.engine.steps.saf_step`, cells in `modes.Accumulating`), so it
runs any step model: a `Network` or a Flax model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from safjax import engine
from safjax import neurons as neurons_lib
from safjax.engine import steps, validation

Array = jax.Array

SAFState = steps.SAFState


def validate(net, method: str) -> float:
    """SAF needs affine maps between neurons, neurons with the accumulation identity (fixed threshold,
    soft reset) and one λ; returns λ."""
    return validation.require_online(net, neurons_lib.ACCUMULATION, method)


def init_state(net, batch_size: int, dtype=jnp.float32) -> SAFState:
    return steps.init_saf_state(engine.as_step_model(net), batch_size, dtype)


def saf_step(net, leak: float, params, state: SAFState, x_t: Array, final: bool = False):
    """One SAF step → ``(state[t], (o[t] [B, C], Û^o[t] [B, C], spikes per layer))``.

    ``final=True`` gives the SAF-F pseudo-derivative at this step (see the module docstring).
    """
    return steps.saf_step(engine.as_step_model(net), leak, params, state, x_t, final)


def forward(net, params, inputs, labels, unroll: int | bool = 1):
    """SAF's forward alone: inputs [T, B, ...] → o [T, B, C] (one evaluation per operator)."""
    del labels
    leak = validate(net, "saf")
    body = lambda state, x_t: saf_step(net, leak, params, state, x_t)  # noqa: E731
    return jax.lax.scan(body, init_state(net, inputs.shape[1], inputs.dtype), inputs, unroll=unroll)[1][0]


def step_forward(net, params, x_t, labels):
    """One SAF step from the initial state (synaptic-operation counting)."""
    del labels
    return saf_step(net, validate(net, "saf"), params, init_state(net, x_t.shape[0], x_t.dtype), x_t)
