"""SAF-F (docs/methods.md §4): SAF forward for T steps without a gradient graph, one loss and one update
at t = T on the λ-weighted rates a = â[T]/c_T (logits o = Û^o[T]/c_T).

Its gradient equals spike representation's (Theorem 2), with the constant 1 under the 1/V_th
pseudo-derivative convention described in `safjax.methods.saf`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from safjax import losses, rate_map
from safjax import network as network_lib
from safjax.methods import base, saf

NAME = "saf_f"


def loss_and_grads(net: network_lib.Network, params, inputs, labels, config):
    """((loss, (outputs Σ_t o[t] [B, C], per-layer firing rates)), grads)."""
    network_lib.check_inputs(net, inputs, labels)
    leak = saf.validate(net, NAME)
    frozen = jax.lax.stop_gradient(params)

    def body(carry, t):
        state, totals = carry
        x_t = jax.lax.dynamic_index_in_dim(inputs, t, keepdims=False)  # no copy of inputs[:-1]
        state, (output, _, spikes) = saf.saf_step(net, leak, frozen, state, x_t)
        return (state, base.tree_add(totals, (output, base.mean_rates(spikes)))), None

    state = saf.init_state(net, inputs.shape[1], inputs.dtype)
    totals = base.zero_totals(net, inputs.shape[1], inputs.dtype)
    num_steps = inputs.shape[0]
    (state, (outputs, rates)), _ = jax.lax.scan(
        body, (state, totals), jnp.arange(num_steps - 1), unroll=config.unroll
    )

    def final_loss(params):
        _, (output, potential_out, spikes) = saf.saf_step(
            net, leak, params, state, inputs[-1], final=True
        )
        logits = potential_out / (leak * state.c + 1.0)
        loss = losses.ce_mse_loss(logits, labels, config.mse_weight)
        all_rates = base.tree_add(rates, base.mean_rates(spikes))
        return loss, (outputs + output, base.finish_rates(all_rates, num_steps))

    return jax.value_and_grad(final_loss, has_aux=True)(params)


train_step = base.one_update_train_step(loss_and_grads)


def saf_f() -> base.Method:
    """SAF-F: one update at the final step, spike representation's gradient (docs/methods.md §4.4);
    clipped to global norm `rate_map.SPIKE_REPRESENTATION_GRAD_CLIP` by default (§4.5)."""
    return base.Method(
        NAME, "SAF, update at the final step (docs/methods.md §4)", train_step, base.one_update,
        forward=saf.forward, step_forward=saf.step_forward, grad_clip=rate_map.SPIKE_REPRESENTATION_GRAD_CLIP,
        validate=functools.partial(saf.validate, method=NAME),
    )
