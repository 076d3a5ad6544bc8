"""SLTT and SLTT-K (docs/methods.md §9): the identities of §5.7 and §5.8, SLTT-K's draw, memory flat
in T, the difference from OTTT_A, and the refusals.

The reference of §5.7 below is written from the equations of docs/methods.md §1.2–1.4 and §9.1 in
plain jax.numpy over the params' dense kernels and biases: it uses neither `safjax.simulate`, nor
`safjax.neurons`, nor the method code. The topology of each `reference_nets` architecture is the
hand-written one of `independent_refs.TOPOLOGY`.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import safjax
from safjax import costs, ops
from safjax.methods import bptt, online, ottt, sltt

import identity_helpers as helpers
import independent_refs
import reference_nets
from budget import first_fast

ALPHA = 4.0  # the default sigmoid surrogate (docs/methods.md §1.3)
GAMMA = 0.05  # TrainConfig's default mse_weight
CONFIG = safjax.TrainConfig(mse_weight=GAMMA)
FAST_COMPILE = {"xla_backend_optimization_level": 0}  # halves a CPU compile; results and buffer sizes unchanged


# --- The independent reference: BPTT through a hand-written loop, temporal paths optionally cut ---


@jax.custom_vjp
def _heaviside(z):
    return (z >= 0).astype(z.dtype)  # H(0) = 1


def _heaviside_fwd(z):
    return _heaviside(z), z


def _heaviside_bwd(z, g):
    sig = jax.nn.sigmoid(ALPHA * z)
    return (g * ALPHA * sig * (1.0 - sig),)


_heaviside.defvjp(_heaviside_fwd, _heaviside_bwd)


def _dense(path_params):
    (found,) = [p for p in path_params if "kernel" in p]
    return found["kernel"], found["bias"]


def _ce_mse(logits, labels):
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    ce = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), axis=1))
    return (1.0 - GAMMA) * ce + GAMMA * jnp.mean((logits - onehot) ** 2)


def reference_loss(params, inputs, labels, topology, leak, threshold, reset, detach):
    """Σ_t L[t] of the LIF network unrolled over T in Python. ``detach``: sg on u[t−1] and the
    reset's s[t−1] in every neuron and on the s^k[t−1] a feedback path reads (docs/methods.md
    §5.7); without it, plain BPTT (§2)."""
    cut = jax.lax.stop_gradient if detach else (lambda a: a)
    num_steps, batch = inputs.shape[:2]
    sizes = [_dense(layer_params[0])[0].shape[1] for layer_params in params["layers"]]
    u = [jnp.zeros((batch, n)) for n in sizes]
    s_prev = [None] + [jnp.zeros((batch, n)) for n in sizes]  # s^k[t−1]
    total = 0.0
    for t in range(num_steps):
        s_now = [inputs[t]]
        for l, (paths, layer_params) in enumerate(zip(topology, params["layers"], strict=True), start=1):
            current = 0.0
            for (source, scale), path_params in zip(paths, layer_params, strict=True):
                signal = s_now[source] if source < l else cut(s_prev[source])
                kernel, bias = _dense(path_params)
                current = current + (scale * signal) @ kernel + bias
            v, s = cut(u[l - 1]), cut(s_prev[l])
            kept = v - threshold * s if reset == "soft" else v * (1.0 - s)
            u[l - 1] = leak * kept + current
            s_now.append(_heaviside(u[l - 1] - threshold))
        kernel_o, bias_o = _dense(params["readout"])
        total = total + _ce_mse(s_now[-1] @ kernel_o + bias_o, labels) / num_steps
        s_prev = [None] + s_now[1:]
    return total


def _reference_grads(architecture, leak, reset, params, inputs, labels):
    """(loss, SLTT-reference gradient, plain-BPTT gradient) of the hand-written loop, one compile."""
    topology = independent_refs.TOPOLOGY[architecture]

    def both(p):
        loss, detached = jax.value_and_grad(reference_loss)(p, inputs, labels, topology, leak, 1.0, reset, True)
        return loss, detached, jax.grad(reference_loss)(p, inputs, labels, topology, leak, 1.0, reset, False)

    return jax.jit(both).lower(params).compile(FAST_COMPILE)(params)


def _setup(architecture, num_steps, leak=0.5, reset="soft"):
    net = reference_nets.build(architecture, leak, reset=reset)
    params, inputs, labels = reference_nets.params_and_data(net, num_steps)
    return net, params, inputs, labels


# --- §5.7: SLTT is BPTT with the temporal paths detached ---


@pytest.mark.parametrize("architecture,leak,reset", first_fast([
    ("mlp", 0.5, "soft"), ("skip", 0.9, "soft"), ("feedback", 0.9, "hard"),
]))
def test_sltt_equals_bptt_with_temporal_paths_detached(architecture, leak, reset):
    net, params, inputs, labels = _setup(architecture, 4, leak, reset)
    (loss, (_, rates)), grads = jax.jit(sltt.loss_and_grads, static_argnums=(0, 4))(net, params, inputs, labels,
                                                                                  CONFIG)
    assert all(0.02 < float(r) < 0.98 for r in rates), rates  # no silent or saturated layer
    ref_loss, ref_grads, bptt_grads = _reference_grads(architecture, leak, reset, params, inputs, labels)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    chex.assert_trees_all_close(grads, ref_grads, atol=1e-12, rtol=0)
    # Not vacuous: the temporal paths matter here, so full BPTT's gradient is another one.
    assert helpers.max_abs_difference(grads, bptt_grads) > 1e-3


@pytest.mark.slow
def test_reference_without_detachment_is_the_library_bptt():
    """The hand-written loop is trustworthy: undetached, it reproduces `bptt` exactly."""
    net, params, inputs, labels = _setup("feedback", 4, 0.5)
    (loss, _), grads = jax.jit(bptt.loss_and_grads, static_argnums=(0, 4))(net, params, inputs, labels, CONFIG)
    ref_loss, _, ref_grads = _reference_grads("feedback", 0.5, "soft", params, inputs, labels)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    chex.assert_trees_all_close(grads, ref_grads, atol=1e-12, rtol=0)


# --- §5.8 and §9.2: SLTT-K ---


def test_sltt_train_step_applies_the_summed_gradient_once_and_sltt_k_with_every_step_is_sltt():
    net, params, inputs, labels = _setup("skip", 4)
    optimizer = optax.sgd(1.0)  # Δparams = −grad
    methods = (sltt.sltt(), sltt.sltt_k(0), sltt.sltt_k(4))  # K = 0 (off) and K = T: every step (§5.8)

    @jax.jit
    def updates(params, key):  # one compile for the three methods' steps
        results = [m.train_step(net, params, optimizer.init(params), inputs, labels, optimizer=optimizer,
                                config=CONFIG, key=key) for m in methods]
        return [(jax.tree_util.tree_map(jnp.subtract, params, p), metrics) for p, _, metrics in results]

    (grads, metrics), *with_k = updates(params, jax.random.key(3))
    (loss, (outputs, _)), expected = sltt.loss_and_grads(net, params, inputs, labels, CONFIG)
    chex.assert_trees_all_close(grads, expected, atol=1e-12, rtol=0)
    np.testing.assert_allclose(metrics.loss, loss, rtol=1e-13)
    np.testing.assert_allclose(metrics.outputs, outputs, rtol=1e-13)
    for got, got_metrics in with_k:
        chex.assert_trees_all_close(got, grads, atol=0, rtol=0)
        assert float(got_metrics.loss) == float(metrics.loss)
    assert bool(sltt.selected_steps(jax.random.key(3), 4, 7).all())  # K > T: every step too


def _drawn_mask(key, num_steps, k):
    """S drawn as the official code does: a permutation of the T steps cut to its first K."""
    mask = np.zeros(num_steps, bool)
    mask[np.asarray(jax.random.permutation(key, num_steps)[:k])] = True
    return mask


def test_sltt_k_sums_the_gradients_of_the_drawn_steps_only():
    num_steps, k = 5, 2
    net, params, inputs, labels = _setup("mlp", num_steps)
    per_step = sltt.step_gradients(net, params, inputs, labels, CONFIG)  # ∇L[t], [T] leaves
    (all_loss, _), all_grads = sltt.loss_and_grads(net, params, inputs, labels, CONFIG)
    chex.assert_trees_all_close(jax.tree_util.tree_map(lambda g: g.sum(0), per_step), all_grads, atol=1e-12, rtol=0)
    optimizer, method = optax.sgd(1.0), safjax.get_method("sltt_k", backprop_steps=k)
    step = jax.jit(lambda p, s, x, y, key: method.train_step(net, p, s, x, y, optimizer=optimizer, config=CONFIG,
                                                              key=key))
    for seed in (0, 1):
        key = jax.random.key(seed)
        mask = _drawn_mask(key, num_steps, k)
        assert mask.sum() == k
        np.testing.assert_array_equal(sltt.selected_steps(key, num_steps, k), mask)
        expected = jax.tree_util.tree_map(lambda g: jnp.tensordot(jnp.asarray(mask, g.dtype), g, 1), per_step)
        new_params, _, metrics = step(params, optimizer.init(params), inputs, labels, key)
        chex.assert_trees_all_close(jax.tree_util.tree_map(jnp.subtract, params, new_params), expected,
                                    atol=1e-12, rtol=0)
        # The reported loss sums all T steps, whatever K (docs/methods.md §9.2).
        np.testing.assert_allclose(metrics.loss, all_loss, rtol=1e-13)


def test_different_keys_draw_different_steps():
    masks = {tuple(np.asarray(sltt.selected_steps(jax.random.key(seed), 6, 2))) for seed in range(8)}
    assert len(masks) > 1
    assert all(sum(m) == 2 for m in masks)


def test_sltt_k_refuses_a_negative_k_and_a_missing_key():
    with pytest.raises(ValueError, match="backprop_steps.*≥ 0"):
        safjax.get_method("sltt_k", backprop_steps=-1)
    assert safjax.get_method("sltt_k", backprop_steps=2).needs_key
    assert not safjax.get_method("sltt_k").needs_key
    net, params, inputs, labels = _setup("mlp", 4)
    optimizer = optax.sgd(0.1)
    step = safjax.make_train_step(sltt.sltt_k(2), net, optimizer, CONFIG)
    with pytest.raises(ValueError, match="key"):
        step(params, optimizer.init(params), inputs, labels)
    with pytest.raises(ValueError, match="pass a fresh `key`"):  # the method itself, called directly
        sltt.sltt_k(2).train_step(net, params, optimizer.init(params), inputs, labels, optimizer=optimizer,
                                  config=CONFIG)


# --- Costs, and the relation to OTTT_A (docs/methods.md §9.1) ---


def _temp_bytes(method, net, num_steps):
    params, inputs, labels = reference_nets.params_and_data(net, num_steps)
    optimizer = optax.sgd(0.1)

    def step(p, s, x, y, key):
        return method.train_step(net, p, s, x, y, optimizer=optimizer, config=CONFIG, key=key)

    return costs.compiled_memory(step, params, optimizer.init(params), inputs, labels, jax.random.key(0),
                                 compiler_options=FAST_COMPILE)["temp_bytes"]


@pytest.mark.slow
def test_sltt_memory_is_flat_in_time_and_bptt_grows():
    net = reference_nets.build("mlp")
    for method in (sltt.sltt(), sltt.sltt_k(2)):
        short, long = _temp_bytes(method, net, 4), _temp_bytes(method, net, 16)
        assert short == long, (method, short, long)
    short, long = _temp_bytes(bptt.bptt(), net, 4), _temp_bytes(bptt.bptt(), net, 16)
    assert long >= 2 * short, (short, long)


def _ottt_a_grads(net, params, inputs, labels):
    per_step = online.make_step_gradients(ottt.make_step_loss, ottt.init_state, "ottt_a")(
        net, params, inputs, labels, CONFIG)
    return jax.tree_util.tree_map(lambda g: g.sum(0), per_step)


@pytest.mark.slow
def test_sltt_differs_from_ottt_a_except_at_one_step():
    """Same detached δ, but SLTT pairs it with s^{l−1}[t] and OTTT_A with the trace â^{l−1}[t]."""
    net, params, inputs, labels = _setup("mlp", 4, 0.5)
    _, grads = sltt.loss_and_grads(net, params, inputs, labels, CONFIG)
    assert helpers.max_abs_difference(grads, _ottt_a_grads(net, params, inputs, labels)) > 1e-3
    _, grads = sltt.loss_and_grads(net, params, inputs[:1], labels, CONFIG)
    chex.assert_trees_all_close(grads, _ottt_a_grads(net, params, inputs[:1], labels), atol=1e-12, rtol=0)


def test_sltt_trains_max_pooling_and_hard_reset():
    """No capability needed (docs/methods.md §9.3); SLTT-K's selected-step loop, which runs SLTT's
    step loss, on a non-linear operator and the hard reset."""
    layer = safjax.SpikingLayer([safjax.Path(0, [ops.MaxPool(2), ops.Flatten(), ops.Dense(6)])],
                                safjax.lif(reset="hard"))
    net = safjax.Network((4, 4, 2), [layer], [ops.Dense(3)])
    params = safjax.init_params(net, jax.random.PRNGKey(0))
    optimizer = optax.sgd(0.1)
    step = safjax.make_train_step(safjax.get_method("sltt_k", backprop_steps=1), net, optimizer)
    inputs = jax.random.uniform(jax.random.PRNGKey(1), (3, 2, 4, 4, 2)) * 2.0
    new_params, _, metrics = step(params, optimizer.init(params), inputs, jnp.zeros((2,), jnp.int32),
                                  jax.random.key(0))
    assert np.isfinite(metrics.loss)
    assert helpers.max_abs_difference(new_params, params) > 0
