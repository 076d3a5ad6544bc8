"""BPTT (docs/methods.md §2): unroll all T steps, loss Σ_t L[t], differentiate through time (reset path
included unless ``detach_reset``). Memory grows linearly in T.

``remat=True`` is the strong baseline: the time loop becomes a scan over chunks of c ≈ √T
steps, each chunk under `jax.checkpoint`, so the backward pass keeps one carry per chunk and
recomputes one chunk at a time — memory O(T/c + c) instead of O(T), for one extra forward.
"""

from __future__ import annotations

import functools
import math

import jax

from safjax import losses
from safjax import network as network_lib
from safjax import simulate
from safjax.methods import base

NAME = "bptt"


def remat_chunk(num_steps: int) -> int:
    """The largest divisor of ``num_steps`` not above ⌈√num_steps⌉ (1 for a prime T)."""
    limit = math.isqrt(num_steps - 1) + 1 if num_steps > 1 else 1
    return max(d for d in range(1, limit + 1) if num_steps % d == 0)


def sequence_loss(net: network_lib.Network, config, num_steps: int, remat: bool = False):
    """``loss(params, state, inputs [K, B, ...], labels)`` over K steps, each L[t] = ℓ(o[t])/T.

    Returns ``(loss, (state, Σ o[t] [B, C], Σ_t rates[t] per layer))``.
    """

    def run_steps(params, labels, state, inputs):
        def step(state, x_t):
            state, (output, spikes) = simulate.network_step(net, params, state, x_t)
            loss = losses.ce_mse_loss(output, labels, config.mse_weight) / num_steps
            return state, (loss, output, base.mean_rates(spikes))

        state, (loss, outputs, rates) = jax.lax.scan(step, state, inputs, unroll=config.unroll)
        return state, (loss.sum(), outputs.sum(0), tuple(r.sum(0) for r in rates))

    def loss_fn(params, state, inputs, labels):
        if not remat:
            state, (loss, outputs, rates) = run_steps(params, labels, state, inputs)
            return loss, (state, outputs, rates)
        chunk = remat_chunk(inputs.shape[0])
        chunks = inputs.reshape((inputs.shape[0] // chunk, chunk) + inputs.shape[1:])
        run_chunk = jax.checkpoint(lambda s, x: run_steps(params, labels, s, x))
        state, (loss, outputs, rates) = jax.lax.scan(run_chunk, state, chunks)
        return loss.sum(), (state, outputs.sum(0), tuple(r.sum(0) for r in rates))

    return loss_fn


def loss_and_grads(net: network_lib.Network, params, inputs, labels, config, remat: bool = False):
    """((loss, (outputs Σ_t o[t] [B, C], per-layer firing rates)), grads)."""
    network_lib.check_inputs(net, inputs, labels)
    loss_fn = sequence_loss(net, config, inputs.shape[0], remat)
    state = simulate.init_network_state(net, inputs.shape[1], inputs.dtype)

    def total(params):
        loss, (final, outputs, rates) = loss_fn(params, state, inputs, labels)
        return loss, base.with_model_state(net, (outputs, base.finish_rates(rates, inputs.shape[0])), final)

    return jax.value_and_grad(total, has_aux=True)(params)


train_step = base.one_update_train_step(loss_and_grads)


def bptt(remat: bool = False) -> base.Method:
    """Backpropagation through time (docs/methods.md §2): one update per minibatch, memory
    growing with T.

    Args:
      remat: rematerialise chunks of ≈ √T steps in the backward pass (`jax.checkpoint`): memory
        O(√T) for one extra forward, the strong baseline.
    """
    step = base.one_update_train_step(functools.partial(loss_and_grads, remat=remat))

    def cost_model(net, num_steps, batch_size):
        from safjax import costs

        return None if remat else costs.tlbptt_costs(net, num_steps, None, None, batch_size)

    return base.Method(
        NAME, "backpropagation through time (docs/methods.md §2)", step, base.one_update,
        cost_model=cost_model, settings=(("remat", remat),),
    )
