"""SAF-E's compiled temporary memory against OTTT_O's (issue 13; docs/methods.md §4), and the
change behind it left the gradient bit for bit as it was.

SAF-E keeps one residual per layer for its backward pass, the surrogate derivative h(z), computed
in the forward pass (`safjax.engine.modes.saf_spike`); before, XLA recomputed it in the backward pass
from Û^l[t] and a copy of â^l[t−1], both kept alive until then.

The full measurement is VGG-11 (sWS), CIFAR-10 shapes, T = 6:

    python -m experiments.benchmark --model=vgg11_sws --dataset=cifar10 --batch_size=8 --time_steps=6 --methods=saf_e,ottt_o --repeats=1 --baseline=ottt_o

(temp MB SAF-E / OTTT_O: 187.15 / 226.40 = 0.827 before, 179.81 / 226.40 = 0.794 after; at batch
128, compiled on the CPU: 888.73 / 1090.75 = 0.815 before, 694.72 / 1090.75 = 0.637 after). It
compiles for minutes under this test process, so the tests below use VGG-11 at width 0.25 with a
quarter of the batch: parameters scale with width², activations with width × batch, so the
network keeps the full one's split of temp memory between parameter-sized and activation-sized
buffers, and XLA makes the same decisions — the ratios agree with the full network's to 0.003
(batch 2 ↔ 8: 0.830 → 0.795; batch 32 ↔ 128: 0.816 → 0.640). Temp memory is flat in T for both
methods, so T = 2 stands in for T = 6 (same bytes). `experiments/memory_breakdown.py` lists the
buffers behind these numbers.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import safjax
from safjax import costs, models
from safjax.engine import modes
from safjax.methods import ottt_o, saf, saf_e
from budget import first_fast

SHAPE = (32, 32, 3)  # CIFAR-10


def _vgg(width):
    module = models.vgg11_sws(nnx.Rngs(0), num_classes=10, input_shape=SHAPE, width=width)
    return module.network, module.params()


def _data(num_steps, batch, seed=0):
    key_x, key_y = jax.random.split(jax.random.PRNGKey(seed))
    inputs = jax.random.uniform(key_x, (num_steps, batch) + SHAPE, jnp.float32)
    return inputs, jax.random.randint(key_y, (batch,), 0, 10).astype(jnp.int32)


def _temp_bytes(train_step, net, params, num_steps, batch):
    optimizer = optax.sgd(0.01, momentum=0.9)  # as safjax.benchmark
    inputs, labels = _data(num_steps, batch)

    def step(p, s, x, y):
        return train_step(net, p, s, x, y, optimizer=optimizer, config=safjax.TrainConfig())

    return costs.compiled_memory(step, params, optimizer.init(params), inputs, labels)["temp_bytes"]


@pytest.mark.parametrize("batch,bound,stands_for", first_fast([
    (2, 0.81, "batch 8 on the CPU: 0.794 (0.827 before)"),
    (32, 0.68, "batch 128: 0.637 on the CPU (0.815 before)"),
]))
def test_saf_e_temp_memory_is_a_fraction_of_ottt_o(batch, bound, stands_for):
    net, params = _vgg(0.25)
    saf_bytes = _temp_bytes(saf_e.train_step, net, params, 2, batch)
    ottt_bytes = _temp_bytes(ottt_o.train_step, net, params, 2, batch)
    ratio = saf_bytes / ottt_bytes
    assert ratio <= bound, f"SAF-E / OTTT_O temp = {saf_bytes} / {ottt_bytes} = {ratio:.3f} > {bound} (full VGG-11, {stands_for})"


@pytest.mark.slow
def test_the_stored_surrogate_derivative_leaves_gradients_and_updates_bit_identical(monkeypatch):
    """float32, exact equality: per-step gradients and a whole SAF-E minibatch (T updates), with
    `saf._spike` (h(z) computed in the forward pass) and with the plain surrogate spike."""
    net, params = _vgg(0.125)
    inputs, labels = _data(3, 2, seed=1)
    inputs = 1.5 * inputs  # every layer fires
    optimizer, config = optax.sgd(0.1, momentum=0.9), safjax.TrainConfig()

    def run():
        grads = jax.jit(lambda p, x, y: saf_e.step_gradients(net, p, x, y, config))(params, inputs, labels)
        update = jax.jit(lambda p, s, x, y: saf_e.train_step(net, p, s, x, y, optimizer=optimizer, config=config))
        new_params, _, metrics = update(params, optimizer.init(params), inputs, labels)
        return grads, new_params, metrics

    stored = run()
    monkeypatch.setattr(modes, "saf_spike", lambda surrogate, z: surrogate(z))
    plain = run()
    grads = jax.tree_util.tree_leaves(stored[0])
    assert max(float(jnp.abs(g).max()) for g in grads) > 1e-3, "vacuous: gradients vanish"
    assert all(leaf.dtype == jnp.float32 for leaf in grads)
    for a, b in zip(jax.tree_util.tree_leaves(stored), jax.tree_util.tree_leaves(plain)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
