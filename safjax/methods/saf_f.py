"""SAF-F (spec §4): SAF forward for T steps without a gradient graph, one loss and one update
at t = T on the λ-weighted rates a = â[T]/c_T (logits o = Û^o[T]/c_T).

Its gradient equals spike representation's (Theorem 2), with the constant 1 under the 1/V_th
pseudo-derivative convention described in `safjax.methods.saf`.
"""

from __future__ import annotations

import jax

from safjax import losses
from safjax import network as network_lib
from safjax.methods import base, saf

NAME = "saf_f"


def loss_and_grads(net: network_lib.Network, params, inputs, labels, config):
    """((loss, (outputs Σ_t o[t] [B, C], per-layer firing rates)), grads)."""
    network_lib.check_inputs(net, inputs, labels)
    leak = saf.validate(net, NAME)
    frozen = jax.lax.stop_gradient(params)

    def body(state, x_t):
        state, (output, _, spikes) = saf.saf_step(net, leak, frozen, state, x_t)
        return state, (output, base.mean_rates(spikes))

    state = saf.init_state(net, inputs.shape[1], inputs.dtype)
    state, (outputs, rates) = jax.lax.scan(body, state, inputs[:-1], unroll=config.unroll)

    def final_loss(params):
        _, (output, potential_out, last_spikes) = saf.saf_step(
            net, leak, params, state, inputs[-1], final=True
        )
        logits = potential_out / (leak * state.c + 1.0)
        loss = losses.ce_mse_loss(logits, labels, config.mse_weight)
        return loss, (outputs.sum(0) + output, base.combine_rates(rates, last_spikes))

    return jax.value_and_grad(final_loss, has_aux=True)(params)


train_step = base.one_update_train_step(loss_and_grads)
