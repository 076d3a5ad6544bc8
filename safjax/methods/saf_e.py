"""SAF-E (spec §4): SAF forward, loss L[t] every step, an optimizer update after every step.

Per step its gradient equals OTTT's (Theorem 1) with one synaptic evaluation instead of two.
"""

from __future__ import annotations

from safjax import config as config_lib
from safjax import losses
from safjax import network as network_lib
from safjax.methods import base, online, saf

NAME = "saf_e"


def make_step_loss(net: network_lib.Network, config: config_lib.TrainConfig, num_steps: int):
    """``step_loss(params, state, x_t, labels) -> (L[t], (state, o[t], rates[t]))``."""
    leak = saf.validate(net, NAME)

    def step_loss(params, state: saf.SAFState, x_t, labels):
        state, (output, _, spikes) = saf.saf_step(net, leak, params, state, x_t)
        loss = losses.ce_mse_loss(output, labels, config.mse_weight) / num_steps
        return loss, (state, output, base.mean_rates(spikes))

    return step_loss


def train_step(net: network_lib.Network, params, opt_state, inputs, labels, *, optimizer, config):
    """One minibatch: inputs [T, B, ...], labels [B] → (params, opt_state, StepOutput)."""
    network_lib.check_inputs(net, inputs, labels)
    step_loss = make_step_loss(net, config, inputs.shape[0])
    carry = saf.init_state(net, inputs.shape[1], inputs.dtype)
    return online.run_online(
        step_loss, carry, params, opt_state, inputs, labels, optimizer, True, config.unroll
    )


def step_gradients(net: network_lib.Network, params, inputs, labels, config):
    """∇L[t] at fixed params for every t; leaves gain a leading [T] axis."""
    network_lib.check_inputs(net, inputs, labels)
    step_loss = make_step_loss(net, config, inputs.shape[0])
    carry = saf.init_state(net, inputs.shape[1], inputs.dtype)
    return online.step_gradients(step_loss, carry, params, inputs, labels, config.unroll)
