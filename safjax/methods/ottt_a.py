"""OTTT_A (spec §3): OTTT gradients summed over the T steps, one optimizer update per minibatch."""

from __future__ import annotations

from safjax import network as network_lib
from safjax.methods import online, ottt

NAME = "ottt_a"


def train_step(net: network_lib.Network, params, opt_state, inputs, labels, *, optimizer, config):
    """One minibatch: inputs [T, B, ...], labels [B] → (params, opt_state, StepOutput)."""
    network_lib.check_inputs(net, inputs, labels)
    step_loss = ottt.make_step_loss(net, config, inputs.shape[0], NAME)
    carry = ottt.init_state(net, inputs.shape[1], inputs.dtype)
    return online.run_online(
        step_loss, carry, params, opt_state, inputs, labels, optimizer, False, config.unroll
    )
