"""SLTT and SLTT-K (docs/methods.md §9): BPTT's forward and per-step loss, each step's loss
backpropagated through the layers of that step only.

Step t runs the plain network step (`simulate.network_step`) from the *detached* state of step
t − 1: sg(u[t−1]) and the sg(s[t−1]) of the reset inside each neuron (``stop_state_gradient``),
and sg(s^k[t−1]) for a feedback path (the whole carried state is detached first, which for a
neuron with more state, e.g. ALIF's b[t−1], detaches that too). So δ^l[t] = ∂L[t]/∂u^l[t] flows
through the spatial path only, and the weight gradient pairs it with the instantaneous
presynaptic spikes (docs/methods.md §9.1):

    ∇_{W_l} = Σ_t δ^l[t] · s^{l−1}[t]ᵀ,   ∇_{b_l} = Σ_t δ^l[t],   L[t] = ℓ(o[t], y) / T

The gradient is taken at every step of the time loop and summed (`online.scan_steps`); one
optimizer update per minibatch. Nothing of step t is kept for step t + 1 but the detached state,
so memory is flat in T. SLTT-K (§9.2) draws K of the T steps per minibatch, uniformly without
replacement, and sums only their gradients (no T/K rescale); the other steps run forward only.
No capability is needed: any neuron of the protocol, any operator (max-pooling included), soft or
hard reset (§9.3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from safjax import train_config as config_lib
from safjax import losses
from safjax import network as network_lib
from safjax import simulate
from safjax.methods import base, online

Array = jax.Array
NAME = "sltt"
NAME_K = "sltt_k"


def init_state(net: network_lib.Network, batch_size: int, dtype=jnp.float32) -> simulate.NetworkState:
    """The carry of the time loop: every layer's neuron state at t = 0."""
    return simulate.init_network_state(net, batch_size, dtype)


def make_step_loss(
    net: network_lib.Network, config: config_lib.TrainConfig, num_steps: int, method: str = NAME
):
    """``step_loss(params, state, x_t, labels) -> (L[t], (state, o[t], rates[t]))``, the gradient of
    L[t] cut off from every earlier step (docs/methods.md §9.1)."""
    del method  # SLTT trains any network: nothing to refuse

    def step_loss(params, state, x_t: Array, labels: Array):
        state = jax.lax.stop_gradient(state)  # u[t−1], s[t−1] (reset and feedback reads), ALIF's b
        state, (output, spikes) = simulate.network_step(net, params, state, x_t, stop_state_gradient=True)
        loss = losses.ce_mse_loss(output, labels, config.mse_weight) / num_steps
        return loss, (state, output, base.mean_rates(spikes))

    return step_loss


def selected_steps(key: Array, num_steps: int, backprop_steps: int) -> Array:
    """SLTT-K's set S as a boolean mask [T]: ``backprop_steps`` = K distinct steps drawn uniformly
    without replacement (a permutation of the T steps cut to its first K, as the official code);
    K = 0 or K ≥ T selects every step (docs/methods.md §9.2)."""
    if backprop_steps <= 0 or backprop_steps >= num_steps:
        return jnp.ones((num_steps,), bool)
    chosen = jax.random.permutation(key, num_steps)[:backprop_steps]
    return jnp.zeros((num_steps,), bool).at[chosen].set(True)


def _scan_selected(step_loss, carry, params, inputs: Array, labels: Array, selected: Array, unroll):
    """Like `online.scan_steps` (gradient summed, no update), but a step's gradient is taken only
    where ``selected`` [T] is True. Returns ``(carry, grad_sum, (Σ loss, Σ o, Σ rates))`` over all T."""
    grad_fn = jax.value_and_grad(step_loss, has_aux=True)
    zero_grads = jax.tree_util.tree_map(jnp.zeros_like, params)

    def with_gradient(carry, x_t):
        return grad_fn(params, carry, x_t, labels)

    def forward_only(carry, x_t):
        return step_loss(params, carry, x_t, labels), zero_grads

    def body(state, step):
        carry, grad_sum, totals = state
        x_t, chosen = step
        # A real conditional (not a select): at a step outside S only the forward runs — no
        # backward pass (the transposed operator evaluations for the weight and input gradients,
        # about twice the forward's synaptic work) and no residuals stored for it — so the backward
        # work scales with K instead of T. (Under `vmap` a cond becomes a select and runs both;
        # the data-parallel step uses `shard_map`, where it stays a cond.)
        (loss, (carry, output, rates)), grads = jax.lax.cond(chosen, with_gradient, forward_only, carry, x_t)
        totals = base.tree_add(totals, (loss, output, rates))
        return (carry, base.tree_add(grad_sum, grads), totals), None

    totals = online._zero_totals(step_loss, params, carry, inputs[0], labels)
    (carry, grad_sum, totals), _ = jax.lax.scan(body, (carry, zero_grads, totals), (inputs, selected), unroll=unroll)
    return carry, grad_sum, totals


def loss_and_grads(net: network_lib.Network, params, inputs: Array, labels: Array, config, selected=None):
    """((Σ_t L[t], (Σ_t o[t] [B, C], per-layer firing rates)), Σ_{t∈S} ∇L[t]) at fixed params.

    ``selected``: SLTT-K's mask [T] (`selected_steps`); None = every step, which is SLTT. The
    reported loss always sums all T steps (docs/methods.md §9.2).
    """
    network_lib.check_inputs(net, inputs, labels)
    num_steps = inputs.shape[0]
    step_loss = make_step_loss(net, config, num_steps)
    carry = init_state(net, inputs.shape[1], inputs.dtype)
    if selected is None:
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        _, _, carry, grads, (loss, outputs, rates) = online.scan_steps(
            step_loss, carry, params, None, zeros, inputs, labels, None, config.unroll
        )
    else:
        carry, grads, (loss, outputs, rates) = _scan_selected(
            step_loss, carry, params, inputs, labels, selected, config.unroll
        )
    return (loss, base.with_model_state(net, (outputs, base.finish_rates(rates, num_steps)), carry)), grads


train_step = base.one_update_train_step(loss_and_grads)

step_gradients = online.make_step_gradients(make_step_loss, init_state, NAME)  # ∇L[t] per t, [T] leaves


def sltt() -> base.Method:
    """SLTT (docs/methods.md §9.1): each step's loss backpropagated through that step's layers only
    (state detached), weight gradients from the instantaneous spikes, summed over T into one update
    per minibatch; memory flat in T. Trains any neuron and operator."""
    return base.Method(
        NAME, "SLTT: spatial-only per-step gradients from instantaneous spikes, summed over T "
        "(docs/methods.md §9)", train_step, base.one_update,
    )


def sltt_k(backprop_steps: int = 0) -> base.Method:
    """SLTT-K (docs/methods.md §9.2): SLTT's per-step gradients summed over K of the T steps, drawn
    per minibatch from the step's key (no T/K rescale); every step runs forward and counts in the
    reported loss.

    Args:
      backprop_steps: K, the number of the T time steps drawn per minibatch whose gradients are summed
        (SLTT-K; 0 = every step, which is SLTT).
    """
    if isinstance(backprop_steps, bool) or not isinstance(backprop_steps, int) or backprop_steps < 0:
        raise ValueError(f"sltt_k: `backprop_steps` (K) must be an int ≥ 0 (0 = every step), got {backprop_steps!r}.")

    def step(net, params, opt_state, inputs, labels, *, optimizer, config, key=None):
        """One minibatch: inputs [T, B, ...], labels [B] → (params, opt_state, StepOutput)."""
        num_steps = inputs.shape[0]
        if backprop_steps > num_steps:
            raise ValueError(
                f"sltt_k: `backprop_steps` (--backprop_steps) = {backprop_steps} exceeds the T = {num_steps} "
                f"time steps of the inputs: expected 0 (every step) to {num_steps}.")
        selected = None
        if 0 < backprop_steps < num_steps:
            if key is None:
                raise ValueError(
                    f"sltt_k with backprop_steps={backprop_steps} < T={num_steps} draws its steps every minibatch: "
                    "pass a fresh `key` to each step, e.g. step(params, opt_state, inputs, labels, "
                    "jax.random.fold_in(key, i)).")
            selected = selected_steps(key, num_steps, backprop_steps)
        (loss, aux), grads = loss_and_grads(net, params, inputs, labels, config, selected)
        params, opt_state = base.apply_gradients(optimizer, grads, opt_state, params)
        return params, opt_state, base.StepOutput(loss, *aux)

    return base.Method(
        NAME_K, "SLTT-K: SLTT's gradient at K random steps of T, no T/K rescale (docs/methods.md §9)",
        step, base.one_update, needs_key=backprop_steps > 0, settings=(("backprop_steps", backprop_steps),),
    )
