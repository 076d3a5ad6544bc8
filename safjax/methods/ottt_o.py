"""OTTT_O (spec §3): OTTT gradients with an optimizer update after *every* time step.

T updates per minibatch; step t + 1's forward uses the parameters updated at step t.
"""

from __future__ import annotations

from safjax import network as network_lib
from safjax.methods import online, ottt

NAME = "ottt_o"


def train_step(net: network_lib.Network, params, opt_state, inputs, labels, *, optimizer, config):
    """One minibatch: inputs [T, B, ...], labels [B] → (params, opt_state, StepOutput)."""
    network_lib.check_inputs(net, inputs, labels)
    step_loss = ottt.make_step_loss(net, config, inputs.shape[0], NAME)
    carry = ottt.init_state(net, inputs.shape[1], inputs.dtype)
    return online.run_online(
        step_loss, carry, params, opt_state, inputs, labels, optimizer, True, config.unroll
    )


def step_gradients(net: network_lib.Network, params, inputs, labels, config):
    """∇L[t] at fixed params for every t; leaves gain a leading [T] axis."""
    network_lib.check_inputs(net, inputs, labels)
    step_loss = ottt.make_step_loss(net, config, inputs.shape[0], NAME)
    carry = ottt.init_state(net, inputs.shape[1], inputs.dtype)
    return online.step_gradients(step_loss, carry, params, inputs, labels, config.unroll)
