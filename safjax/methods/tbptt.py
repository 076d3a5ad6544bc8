"""Temporally-truncated BPTT (spec §7, truncation part): split T into ⌈T/K⌉ windows; in each
window unroll K steps from the carried (detached) state, loss on that window's outputs, then
update (``window_mode="update"``, default) or accumulate gradients for one update at the end.
K = T is BPTT. Local blocks of layers (block size B) extend this in a later module.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from safjax import network as network_lib
from safjax import simulate
from safjax.methods import base, bptt, online

NAME = "tbptt"


def train_step(net: network_lib.Network, params, opt_state, inputs, labels, *, optimizer, config):
    """One minibatch: inputs [T, B, ...], labels [B] → (params, opt_state, StepOutput)."""
    network_lib.check_inputs(net, inputs, labels)
    num_steps = inputs.shape[0]
    window = min(config.truncation or num_steps, num_steps)
    sequence_loss = bptt.sequence_loss(net, config, num_steps, config.remat)

    def window_loss(params, state, x_window, labels):
        loss, (state, output, rates) = sequence_loss(params, state, x_window, labels)
        return loss, (jax.lax.stop_gradient(state), output, rates)

    accumulate = config.window_mode == "accumulate"
    grad_sum = jax.tree_util.tree_map(jnp.zeros_like, params) if accumulate else None
    carry = simulate.init_network_state(net, inputs.shape[1], inputs.dtype)
    num_full = num_steps // window
    windows = inputs[: num_full * window].reshape((num_full, window) + inputs.shape[1:])
    segments = [windows]
    if num_steps % window:
        segments.append(inputs[num_full * window :][None])
    totals = []
    for segment in segments:  # at most two static segments: full windows, then the remainder
        params, opt_state, carry, grad_sum, segment_totals = online.scan_steps(
            window_loss, carry, params, opt_state, grad_sum, segment, labels, optimizer
        )
        totals.append(segment_totals)
    if accumulate:
        params, opt_state = base.apply_gradients(optimizer, grad_sum, opt_state, params)
    loss, outputs, rates = functools.reduce(base.tree_add, totals)
    return params, opt_state, base.StepOutput(loss, outputs, base.finish_rates(rates, num_steps))
