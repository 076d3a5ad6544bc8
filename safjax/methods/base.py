"""What every training method returns, and the shared pieces of their time loops."""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from safjax import simulate

Array = jax.Array


class StepOutput(NamedTuple):
    """Metrics of one training minibatch."""

    loss: Array  # [] the method's total loss over the minibatch
    outputs: Array  # [B, C] Σ_t o[t]; prediction = argmax (docs/methods.md §1)
    firing_rates: tuple  # per spiking layer, [] mean spikes per neuron per step
    model_state: object = None  # the model's own state after the minibatch (running statistics), or None


def network_only_params(net, network_params, key):
    """Default `Method.init_params`: the method trains the network's parameters and nothing else."""
    del net, key
    return network_params


def no_constraints(net) -> None:
    """Default `Method.validate`: the method trains any network."""
    del net


def identity_network_params(params):
    """Default `Method.network_params`: the trained params *are* the network's params."""
    return params


def plain_forward(net, params, inputs, labels, unroll: int | bool = 1):
    """Default `Method.forward`: the plain spiking net over T steps (docs/methods.md §1),
    inputs [T, B, ...] → outputs o [T, B, C]."""
    del labels
    return simulate.run(net, params, inputs, unroll)[0]


def plain_step_forward(net, params, x_t, labels):
    """Default `Method.step_forward`: one step of the plain spiking net from the initial state."""
    del labels
    state = simulate.init_network_state(net, x_t.shape[0], x_t.dtype)
    return simulate.network_step(net, params, state, x_t)


def one_update(num_steps: int) -> int:
    """`Method.updates_per_minibatch` of a method that updates once per minibatch."""
    del num_steps
    return 1


def every_step(num_steps: int) -> int:
    """`Method.updates_per_minibatch` of a method that updates after every time step."""
    return num_steps


@dataclasses.dataclass(frozen=True, eq=False)  # compared and hashed by identity
class Method:
    """A training method, as its factory built it (e.g. ``safjax.methods.get_method("tbptt",
    truncation=4)``): everything the trainer, the benchmark and the tests need, with the method's
    own settings already inside.

    Attributes:
      name: the registry name.
      summary: one line, citing docs/methods.md.
      train_step: ``train_step(net, params, opt_state, inputs, labels, *, optimizer, config,
        key=None) -> (params, opt_state, StepOutput)``; inputs [T, B, ...], labels [B], ``config``
        the `TrainConfig` every method shares, ``key`` this minibatch's PRNG key (required when
        ``needs_key``).
      updates_per_minibatch: T → optimizer updates per minibatch (for per-epoch schedules).
      forward: ``forward(net, params, inputs, labels, unroll) -> o [T, B, C]``, the method's forward
        pass alone (cost counting).
      step_forward: ``step_forward(net, params, x_t, labels)``, one step of that forward from the
        initial state (synaptic-operation counting).
      init_params: ``init_params(net, network_params, key) -> params``, called once before the
        optimizer state is made; a method may train more than the network (TL-BPTT's heads).
      network_params: trained params → the network's params (what evaluation runs).
      grad_clip: the global gradient norm the trainer clips to when the run leaves ``--grad_clip``
        at -1 (0 = none): a property of the method's gradient (docs/methods.md §4.5).
      validate: ``validate(net)`` raises ValueError, in one line, for a network the method cannot
        train (an operator or a neuron it does not support); called when a step is made.
      cost_model: optional ``cost_model(net, T, batch) -> dict`` of analytic costs (MACs, memory
        accesses, stored activation bytes) reported next to the benchmark's measured ones.
      needs_key: whether ``train_step`` draws random numbers (SLTT-K's steps).
      settings: the factory's arguments, ``((name, value), ...)``.
    """

    name: str
    summary: str
    train_step: Callable
    updates_per_minibatch: Callable[[int], int]
    forward: Callable = plain_forward
    step_forward: Callable = plain_step_forward
    init_params: Callable = network_only_params
    network_params: Callable = identity_network_params
    grad_clip: float = 0.0
    validate: Callable = no_constraints
    cost_model: Callable | None = None
    needs_key: bool = False
    settings: tuple = ()

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.settings)
        return f"Method({self.name}({arguments}))"


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
    from safjax import engine

    model = engine.as_step_model(net)
    outputs = jnp.zeros((batch_size, model.num_classes), dtype)
    return outputs, tuple(jnp.zeros((batch_size,), dtype) for _ in model.neurons)


def apply_gradients(optimizer: optax.GradientTransformation, grads, opt_state, params):
    """One optimizer update; returns (params, opt_state)."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def tree_add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def one_update_train_step(loss_and_grads: Callable) -> Callable:
    """A ``train_step`` from ``loss_and_grads(net, params, inputs, labels, config)``
    → ``((loss, (outputs, rates)), grads)`` (or ``(outputs, rates, model state)`` for a model that
    carries its own state, `engine.steps.carries_state`): one optimizer update per minibatch."""

    def train_step(net, params, opt_state, inputs, labels, *, optimizer, config, key=None):
        """One minibatch: inputs [T, B, ...], labels [B] → (params, opt_state, StepOutput)."""
        del key
        (loss, aux), grads = loss_and_grads(net, params, inputs, labels, config)
        params, opt_state = apply_gradients(optimizer, grads, opt_state, params)
        return params, opt_state, StepOutput(loss, *aux)  # aux: (outputs, rates[, model state])

    return train_step


def with_model_state(net, aux: tuple, state) -> tuple:
    """``aux`` = (outputs, rates), plus the model's own state at the end of the run ``state`` where the
    model carries one (a Flax model's running statistics)."""
    from safjax import engine
    from safjax.engine import steps

    model = engine.as_step_model(net)
    return aux + (steps.final_model_state(model, state),) if steps.carries_state(model) else aux
