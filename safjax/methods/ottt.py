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

import jax
import jax.numpy as jnp

from safjax import engine
from safjax import train_config as config_lib
from safjax import losses
from safjax import neurons as neurons_lib
from safjax.engine import steps, validation
from safjax.methods import base

Array = jax.Array
sg = jax.lax.stop_gradient


OTTTState = steps.OTTTState


def validate(net, method: str) -> float:
    """OTTT needs affine maps between neurons, neurons with a fixed threshold (the trace form) and
    one λ; returns λ."""
    return validation.require_online(net, neurons_lib.TRACES, method)


def init_state(net, batch_size: int, dtype=jnp.float32) -> OTTTState:
    return steps.init_ottt_state(engine.as_step_model(net), batch_size, dtype)


def make_step_loss(net, config: config_lib.TrainConfig, num_steps: int, method: str = "ottt"):
    """``step_loss(params, state, x_t, labels) -> (L[t], (state, o[t], rates[t]))``."""
    leak = validate(net, method)
    model = engine.as_step_model(net)

    def step_loss(params, state: OTTTState, x_t: Array, labels: Array):
        state, (output, spikes) = steps.ottt_step(model, leak, params, state, x_t)
        loss = losses.ce_mse_loss(output, labels, config.mse_weight) / num_steps
        return loss, (state, output, base.mean_rates(spikes))

    return step_loss


def forward(net, params, inputs, labels, unroll: int | bool = 1):
    """OTTT's forward alone (both evaluations of every operator): inputs [T, B, ...] → o [T, B, C]."""
    step_loss = make_step_loss(net, config_lib.TrainConfig(), inputs.shape[0])

    def body(state, x_t):
        _, (state, output, _) = step_loss(params, state, x_t, labels)
        return state, output

    return jax.lax.scan(body, init_state(net, inputs.shape[1], inputs.dtype), inputs, unroll=unroll)[1]


def step_forward(net, params, x_t, labels):
    """One OTTT step from the initial state (synaptic-operation counting)."""
    step_loss = make_step_loss(net, config_lib.TrainConfig(), 1)
    return step_loss(params, init_state(net, x_t.shape[0], x_t.dtype), x_t, labels)


# The convention of the OTTT authors' released code (docs/methods.md §3.4), a setting of `ottt_a`
# and `ottt_o`: "safjax" (the trace form above, for which the identities of §5 hold) or "authors".
CONVENTIONS = ("safjax", "authors")


def check_convention(convention: str, method: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"{method}: `convention` must be one of {', '.join(CONVENTIONS)}, got {convention!r} "
                         "(--convention=safjax is the trace form, =authors the OTTT authors' code).")
    return convention


def step_loss_maker(convention: str):
    """``make_step_loss`` of ``convention``: `make_step_loss` ("safjax") or
    `make_authors_step_loss` ("authors")."""
    return {"safjax": make_step_loss, "authors": make_authors_step_loss}[check_convention(convention, "ottt")]


def make_authors_step_loss(
    net, config: config_lib.TrainConfig, num_steps: int, method: str = "ottt"
):
    """The OTTT authors' convention: the same forward and δ^l[t] as `make_step_loss`, but

        ∇_{W_1} L[t] = δ^1[t]·x[t]ᵀ   (the raw input, not the input trace â^0[t])
        ∇_{b_l} L[t] = δ^l[t]          (not δ^l[t]·c_t; the readout's bias too)

    and ∇_{W_l} L[t] = δ^l[t]·â^{l−1}[t]ᵀ for the others. Built on the trace form's step: it
    sees an input trace of 0 from step t − 1, so its â^0[t] = λ·0 + x[t] = x[t] (the input trace
    feeds only the gradient path; the true trace is put back in the returned state), and every
    ``bias`` enters as sg(b) + (b − sg(b))/c_t — b in value, derivative 1/c_t, which cancels c_t.
    """
    leak = validate(net, method)
    step_loss = make_step_loss(net, config, num_steps, method)
    model = engine.as_step_model(net)

    def authors_step_loss(params, state: OTTTState, x_t: Array, labels: Array):
        c = leak * state.c + 1.0
        memoryless = state._replace(traces=(jnp.zeros_like(state.traces[0]),) + tuple(state.traces[1:]))
        loss, (new_state, output, rates) = step_loss(_bias_gradient_scaled(params, 1.0 / c), memoryless, x_t, labels)
        carried = sg(steps.input_signal(leak, state.traces[0], x_t, steps.trace_scale(model, state.c),
                                        steps.trace_scale(model, c)))
        new_state = new_state._replace(traces=(carried,) + tuple(new_state.traces[1:]))
        return loss, (new_state, output, rates)

    return authors_step_loss


def _bias_gradient_scaled(params, scale):
    """``params`` (a Network's dict or an ``nnx.State``) with every leaf named ``bias`` unchanged in value, its gradient multiplied by ``scale``."""

    def scaled(path, leaf):
        names = [getattr(entry, "key", getattr(entry, "name", None)) for entry in path]
        if names and names[-1] == "value":  # an nnx.State leaf: the Variable's name comes before
            names = names[:-1]
        return sg(leaf) + (leaf - sg(leaf)) * scale if names and names[-1] == "bias" else leaf

    return jax.tree_util.tree_map_with_path(scaled, params)
