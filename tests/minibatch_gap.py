"""A whole SAF-E minibatch against a whole OTTT_O minibatch (docs/methods.md §4.6): the largest
parameter difference after the T plain-SGD updates, and how many spikes differ between the two
trajectories. Used by tests/test_identities.py; run as a script, it prints what
docs/identities.md quotes: the table over 4 architectures × λ ∈ {0.5, 0.9, 1.0} × V_th ∈
{1.0, 0.7} (float64, T = 4), then, over one epoch of the digits (`models.digits_mlp`, batch 64,
T = 4, float64, SGD following SAF-E's trajectory), how many minibatches flip a spike:

    python tests/minibatch_gap.py
"""

from __future__ import annotations

import itertools
import pathlib
import sys

import jax

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import reference_nets  # noqa: E402
import safjax  # noqa: E402
from safjax.methods import ottt, saf, saf_e  # noqa: E402

LEARNING_RATES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def _saf_spikes(net, old, new):
    leak = net.layers[0].neuron.leak
    return tuple(a - leak * b for a, b in zip(new.traces[1:], old.traces[1:]))  # s[t] = â[t] − λ·â[t−1]


def _ottt_spikes(net, old, new):
    del net, old
    return tuple(n.s for n in new.neurons)


_METHODS = {
    "saf_e": (saf_e.make_step_loss, saf.init_state, _saf_spikes),
    "ottt_o": (ottt.make_step_loss, ottt.init_state, _ottt_spikes),
}


def sgd_minibatch(method: str, net, params, inputs, labels, learning_rate):
    """``method`` ("saf_e" or "ottt_o") over inputs [T, B, ...] with a plain-SGD update after every
    step, as its ``train_step`` does with ``optax.sgd(learning_rate)``; returns (params after the T
    updates, the spikes of every layer [T, B, ...] along the way)."""
    make_step_loss, init_state, spikes_of = _METHODS[method]
    step_loss = make_step_loss(net, safjax.TrainConfig(), inputs.shape[0])
    grad_fn = jax.grad(step_loss, has_aux=True)

    def body(state, x_t):
        params, carry = state
        grads, (new_carry, _, _) = grad_fn(params, carry, x_t, labels)
        params = jax.tree_util.tree_map(lambda p, g: p - learning_rate * g, params, grads)
        return (params, new_carry), spikes_of(net, carry, new_carry)

    carry = init_state(net, inputs.shape[1], inputs.dtype)
    (params, _), spikes = jax.lax.scan(body, (params, carry), inputs)
    return params, spikes


def gap_and_flips(net, params, inputs, labels, learning_rate):
    """(largest |Δparam| between the SAF-E and OTTT_O minibatches, spikes that differ), as arrays
    (jit-able: ``learning_rate`` may be traced)."""
    p_saf, s_saf = sgd_minibatch("saf_e", net, params, inputs, labels, learning_rate)
    p_ottt, s_ottt = sgd_minibatch("ottt_o", net, params, inputs, labels, learning_rate)
    gap = jnp.max(jnp.stack([jnp.max(jnp.abs(a - b)) for a, b in
                             zip(jax.tree_util.tree_leaves(p_saf), jax.tree_util.tree_leaves(p_ottt))]))
    flips = sum(jnp.sum(jnp.round(a) != jnp.round(b)) for a, b in zip(s_saf, s_ottt))
    return gap, flips


def main():
    header = " | ".join(f"lr {lr:g}" for lr in LEARNING_RATES)
    print(f"| net, λ, V_th | {header} |\n|---|" + "---|" * len(LEARNING_RATES))
    for architecture, leak, threshold in itertools.product(reference_nets.ARCHITECTURES, (0.5, 0.9, 1.0), (1.0, 0.7)):
        net = reference_nets.build(architecture, leak, threshold)
        params, inputs, labels = reference_nets.params_and_data(net, 4, 0, threshold)
        measure = jax.jit(lambda lr: gap_and_flips(net, params, inputs, labels, lr))
        cells = []
        for lr in LEARNING_RATES:
            gap, flips = measure(jnp.asarray(lr, jnp.float64))
            cells.append(f"{float(gap):.1e} ({int(flips)})")
        print(f"| {architecture}, {leak}, {threshold} | {' | '.join(cells)} |", flush=True)
    print("\nEach cell: largest |Δparam| after the T = 4 updates (spikes that differ between the two runs).\n")
    for lr in LEARNING_RATES[1:4]:
        print(digits_epoch(lr), flush=True)


def digits_epoch(learning_rate: float, batch_size: int = 64) -> str:
    """One line: over one epoch of the digits, the minibatches whose SAF-E and OTTT_O runs (from
    the same params, SAF-E's trajectory) differ in a spike, and the parameter gaps."""
    from flax import nnx

    from safjax import encoding, models
    from safjax.datasets import load_digits

    images, labels = load_digits("train")
    model = models.digits_mlp(nnx.Rngs(0), "lif", 0.5, 1.0, 10, images.shape[1:])
    net = model.network
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), model.params())

    @jax.jit
    def minibatch(params, x, y):
        inputs = encoding.direct(x.astype(jnp.float64), 4)
        gap, flips = gap_and_flips(net, params, inputs, y, learning_rate)
        return gap, flips, sgd_minibatch("saf_e", net, params, inputs, y, learning_rate)[0]

    with_flip, without = [], []
    for start in range(0, len(images) - batch_size + 1, batch_size):
        batch = slice(start, start + batch_size)
        gap, flips, params = minibatch(params, jnp.asarray(images[batch]), jnp.asarray(labels[batch]))
        (with_flip if int(flips) else without).append(float(gap))
    return (f"digits_mlp, lr {learning_rate:g}: {len(with_flip)} of {len(with_flip) + len(without)} minibatches "
            f"flip a spike; largest gap {max(with_flip, default=0.0):.1e} with a flip, "
            f"{max(without, default=0.0):.1e} without")


if __name__ == "__main__":
    main()
