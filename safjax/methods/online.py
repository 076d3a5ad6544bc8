"""The time loop shared by the online methods (OTTT_A/O, SAF-E): gradient at every step.

A *step loss* ``step_loss(params, carry, x_t, labels) -> (L[t], (carry, o[t], rates[t]))``
computes step t's loss from a carry that holds no gradient path to earlier steps (rates[t]: the
per-layer mean spike counts, `base.mean_rates`). The loop takes its
gradient every step and either applies an optimizer update right away (``update_every_step``,
OTTT_O / SAF-E: T updates) or sums the gradients for one update at the end (OTTT_A). Memory is
flat in T: nothing of step t survives into step t + 1 except the carry.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from safjax import network as network_lib
from safjax.methods import base

Array = jax.Array


def _zero_totals(step_loss: Callable, *args):
    """Zeros shaped like one step's (loss, o[t], rates[t])."""
    loss, (_, output, rates) = jax.eval_shape(step_loss, *args)
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), (loss, output, rates))


def scan_steps(
    step_loss: Callable,
    carry,
    params,
    opt_state,
    grad_sum,
    inputs: Array,
    labels: Array,
    optimizer: optax.GradientTransformation,
    unroll: int | bool = 1,
):
    """Scan ``step_loss`` over the leading axis of ``inputs``, a gradient at every step.

    ``grad_sum=None`` applies an update after every step; otherwise gradients are added to it.
    Returns ``(params, opt_state, carry, grad_sum, totals)``, ``totals = (Σ loss, Σ o, Σ rates)``
    summed over the steps in the carry (nothing is stacked over time, so memory stays flat).
    """
    grad_fn = jax.value_and_grad(step_loss, has_aux=True)
    update_every_step = grad_sum is None

    def body(state, x_t):
        params, opt_state, carry, grad_sum, totals = state
        (loss, (carry, output, rates)), grads = grad_fn(params, carry, x_t, labels)
        if update_every_step:
            params, opt_state = base.apply_gradients(optimizer, grads, opt_state, params)
        else:
            grad_sum = base.tree_add(grad_sum, grads)
        totals = base.tree_add(totals, (loss, output, rates))
        return (params, opt_state, carry, grad_sum, totals), None

    totals = _zero_totals(step_loss, params, carry, inputs[0], labels)
    state = (params, opt_state, carry, grad_sum, totals)
    (params, opt_state, carry, grad_sum, totals), _ = jax.lax.scan(
        body, state, inputs, unroll=unroll
    )
    return params, opt_state, carry, grad_sum, totals


def run_online(
    step_loss: Callable,
    carry,
    params,
    opt_state,
    inputs: Array,
    labels: Array,
    optimizer: optax.GradientTransformation,
    update_every_step: bool,
    unroll: int | bool = 1,
):
    """All T steps of an online method; returns ``(params, opt_state, StepOutput)``."""
    grad_sum = None if update_every_step else jax.tree_util.tree_map(jnp.zeros_like, params)
    params, opt_state, _, grad_sum, (loss, outputs, rates) = scan_steps(
        step_loss, carry, params, opt_state, grad_sum, inputs, labels, optimizer, unroll
    )
    if not update_every_step:
        params, opt_state = base.apply_gradients(optimizer, grad_sum, opt_state, params)
    num_steps = inputs.shape[0]
    metrics = base.StepOutput(loss, outputs, base.finish_rates(rates, num_steps))
    return params, opt_state, metrics


def step_gradients(
    step_loss: Callable, carry, params, inputs: Array, labels: Array, unroll: int | bool = 1
):
    """Per-step gradients ∇L[t] at fixed params, stacked: every leaf gains a leading [T] axis.

    For analysis and tests (memory grows with T); training uses `run_online`.
    """
    grad_fn = jax.grad(step_loss, has_aux=True)

    def body(carry, x_t):
        grads, (carry, _, _) = grad_fn(params, carry, x_t, labels)
        return carry, grads

    _, grads = jax.lax.scan(body, carry, inputs, unroll=unroll)
    return grads


def make_train_step(make_step_loss: Callable, init_state: Callable, name: str, update_every_step: bool):
    """An online method's ``train_step(net, params, opt_state, inputs, labels, *, optimizer, config, key)``
    from ``make_step_loss(net, config, num_steps, name)`` and ``init_state(net, batch, dtype)``."""

    def train_step(net, params, opt_state, inputs, labels, *, optimizer, config, key=None):
        """One minibatch: inputs [T, B, ...], labels [B] → (params, opt_state, StepOutput)."""
        del key
        network_lib.check_inputs(net, inputs, labels)
        step_loss = make_step_loss(net, config, inputs.shape[0], name)
        carry = init_state(net, inputs.shape[1], inputs.dtype)
        return run_online(
            step_loss, carry, params, opt_state, inputs, labels, optimizer, update_every_step,
            config.unroll,
        )

    return train_step


def make_step_gradients(make_step_loss: Callable, init_state: Callable, name: str):
    """``step_gradients(net, params, inputs, labels, config)``: ∇L[t] at fixed params for every t
    (leaves gain a leading [T] axis)."""

    def gradients(net, params, inputs, labels, config):
        network_lib.check_inputs(net, inputs, labels)
        step_loss = make_step_loss(net, config, inputs.shape[0], name)
        carry = init_state(net, inputs.shape[1], inputs.dtype)
        return step_gradients(step_loss, carry, params, inputs, labels, config.unroll)

    return gradients
