"""Spike representation, SR (docs/methods.md §6): simulate the LIF SNN for T steps without a graph, then
differentiate through the rate map at the measured λ-weighted rates a^l = â^l[T]/c_T:

    a^l = clamp((op_l(a^{l−1}) + b_l)/V_th, 0, 1)     (value: the measured rate;
                                                      ∂: `rate_map.band_clip`, 0 on the edges)
    o   = W_o a^N + b_o,   one loss, one update per minibatch.

A feedback path contributes the constant rate â^k[T−1]/c_T of its source (as SAF-F does).
"""

from __future__ import annotations

import functools

import jax

from safjax import engine, losses, rate_map
from safjax import network as network_lib
from safjax.engine import steps
from safjax.methods import base, saf

NAME = "spike_rep"
sg = jax.lax.stop_gradient


RateState = steps.RateState


def measure_traces(net, params, inputs, leak: float, unroll=1):
    """Run the LIF SNN; returns (RateState at T, Σ_t o[t] [B, C], per-layer firing rates)."""
    model, params = engine.as_step_model(net), sg(params)
    batch, dtype = inputs.shape[1], inputs.dtype

    def body(carry, x_t):
        state, totals = carry
        state, (output, spikes) = steps.measure_step(model, leak, params, state, x_t)
        return (state, base.tree_add(totals, (output, base.mean_rates(spikes)))), None

    totals = base.zero_totals(net, batch, dtype)
    state = steps.init_rate_state(model, batch, dtype)
    (state, (outputs, rates)), _ = jax.lax.scan(body, (state, totals), inputs, unroll=unroll)
    return state, outputs, base.finish_rates(rates, inputs.shape[0])


def rate_logits(net, params, state: RateState) -> jax.Array:
    """Logits o [B, C] of the rate map at the measured rates (SR's differentiable graph)."""
    return steps.rate_logits(engine.as_step_model(net), params, state)


def loss_and_grads(net: network_lib.Network, params, inputs, labels, config):
    """((loss, (outputs Σ_t o[t] [B, C], per-layer firing rates)), grads)."""
    network_lib.check_inputs(net, inputs, labels)
    leak = saf.validate(net, NAME)
    state, outputs, rates = measure_traces(net, params, inputs, leak, config.unroll)

    def loss_fn(params):
        logits = rate_logits(net, params, state)
        return losses.ce_mse_loss(logits, labels, config.mse_weight), (outputs, rates)

    return jax.value_and_grad(loss_fn, has_aux=True)(params)


train_step = base.one_update_train_step(loss_and_grads)


def spike_rep() -> base.Method:
    """Spike representation (docs/methods.md §6); clipped to global norm
    `rate_map.SPIKE_REPRESENTATION_GRAD_CLIP` by default (§4.5)."""
    return base.Method(
        NAME, "spike representation, SR (docs/methods.md §6)", train_step, base.one_update,
        grad_clip=rate_map.SPIKE_REPRESENTATION_GRAD_CLIP, validate=functools.partial(saf.validate, method=NAME),
    )
