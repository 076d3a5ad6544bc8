"""What every training method returns, and the shared pieces of their time loops."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


class StepOutput(NamedTuple):
    """Metrics of one training minibatch."""

    loss: Array  # [] the method's total loss over the minibatch
    outputs: Array  # [B, C] Σ_t o[t]; prediction = argmax (docs/methods.md §1)
    firing_rates: tuple  # per spiking layer, [] mean spikes per neuron per step


def network_only_params(net, network_params, config, key):
    """Default `Method.init_params`: the method trains the network's parameters and nothing else."""
    del net, config, key
    return network_params


def no_constraints(net) -> None:
    """Default `Method.validate`: the method trains any network."""
    del net


def identity_network_params(params):
    """Default `Method.network_params`: the trained params *are* the network's params."""
    return params


class Method(NamedTuple):
    """A registered training method.

    ``train_step(net, params, opt_state, inputs, labels, *, optimizer, config)``
    → ``(params, opt_state, StepOutput)``; inputs [T, B, ...], labels [B].

    A method may train parameters beyond the network's (TL-BPTT's auxiliary classifiers). The
    trainer calls ``init_params(net, network_params, config, key) -> params`` once, before
    creating the optimizer state, passes those params to ``train_step``, and evaluates the network
    on ``network_params(params)``. The defaults make both the identity.

    ``grad_clip`` is the global gradient norm the trainer clips to when the run leaves
    ``--grad_clip`` at -1 (0 = no clipping): a property of the method's gradient, e.g. spike
    representation's explodes toward the input of deep nets (docs/results.md).

    ``validate(net)`` raises ValueError for a network the method cannot train (e.g. max-pooling
    under the trace methods); the train-step makers call it when the step is made.
    """

    name: str
    train_step: Callable
    updates_per_minibatch: str
    summary: str
    init_params: Callable = network_only_params
    network_params: Callable = identity_network_params
    grad_clip: float = 0.0
    validate: Callable = no_constraints


def mean_rates(spikes: tuple) -> tuple:
    """Per-layer, per-example mean spike count of one step: [B, ...] arrays → [B] each.

    Kept per example (not averaged over the batch) so that under data parallelism the running
    sums need no cross-device reduction inside the time loop; `finish_rates` averages at the end.
    """
    return tuple(jnp.mean(s.reshape(s.shape[0], -1), axis=1) for s in spikes)


def finish_rates(rate_sums: tuple, num_steps: int) -> tuple:
    """Per-layer firing rates (spikes per neuron per step, scalars) from Σ_t `mean_rates`."""
    return tuple(jnp.mean(r) / num_steps for r in rate_sums)


def zero_totals(net, batch_size: int, dtype) -> tuple:
    """Zero running sums (Σ_t o[t] [B, C], Σ_t rates[t] [B] per layer) for a scan's carry."""
    outputs = jnp.zeros((batch_size, net.num_classes), dtype)
    return outputs, tuple(jnp.zeros((batch_size,), dtype) for _ in net.layers)


def apply_gradients(optimizer: optax.GradientTransformation, grads, opt_state, params):
    """One optimizer update; returns (params, opt_state)."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def tree_add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def one_update_train_step(loss_and_grads: Callable) -> Callable:
    """A ``train_step`` from ``loss_and_grads(net, params, inputs, labels, config)``
    → ``((loss, (outputs, rates)), grads)``: one optimizer update per minibatch."""

    def train_step(net, params, opt_state, inputs, labels, *, optimizer, config):
        """One minibatch: inputs [T, B, ...], labels [B] → (params, opt_state, StepOutput)."""
        (loss, (outputs, rates)), grads = loss_and_grads(net, params, inputs, labels, config)
        params, opt_state = apply_gradients(optimizer, grads, opt_state, params)
        return params, opt_state, StepOutput(loss, outputs, rates)

    return train_step
