"""Checks against references written independently of the library (plain numpy, float64).

The identity tests (test_identities.py) compare methods with each other; methods share the
network, neuron and rate-map code, so an error in that shared path passes them all. Every
expected value here comes from `independent_refs` (numpy loops written from the equations of
docs/methods.md) or is written literally in the test; safjax is used only to build the network
and params under test and to run the code under test.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import safjax
from safjax import ops, rate_map
from safjax.methods import saf_f, spike_rep

import identity_helpers
import independent_refs as refs
import reference_nets
from budget import first_fast

assert jax.config.jax_enable_x64, "tests/conftest.py must enable float64"

TOL = dict(atol=1e-12, rtol=0.0)
GRAD_TOL = dict(atol=1e-10, rtol=1e-10)


def _to_numpy(tree):
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), tree)


def _setup(architecture, leak, threshold, num_steps, seed=0):
    net = reference_nets.build(architecture, leak, threshold)
    params, inputs, labels = reference_nets.params_and_data(net, num_steps, seed, threshold)
    layers, readout = refs.numpy_layers(params, refs.TOPOLOGY[architecture])
    return net, params, np.asarray(inputs), np.asarray(labels), layers, readout


def _assert_well_posed(forward, threshold):
    """No membrane so close to V_th that float summation order could flip a spike, and every
    layer fires at a moderate rate (an agreement on silent layers proves nothing)."""
    for u, s in zip(forward["u"], forward["s"]):
        assert np.min(np.abs(u - threshold)) > 1e-9, "test data puts a membrane at V_th"
        assert 0.02 < s.mean() < 0.98, f"degenerate firing rate {s.mean():.3f}"


# ---------------------------------------------------------------- 1. multi-path forward


def _library_membranes(net, params, inputs):
    """u^l[t] per layer [T, B, n] from the library's per-step network function."""

    def body(state, x_t):
        state, _ = safjax.simulate.network_step(net, params, state, x_t)
        return state, tuple(layer_state.v for layer_state in state)

    state = safjax.simulate.init_network_state(net, inputs.shape[1], inputs.dtype)
    _, membranes = jax.lax.scan(body, state, inputs)
    return membranes


@pytest.mark.parametrize("architecture", ["skip", "feedback"])
@pytest.mark.parametrize("leak,threshold", first_fast([(0.5, 1.0), (1.0, 0.7)]))
def test_forward_matches_numpy_lif_loop(architecture, leak, threshold):
    """Guards mutation 1 (a multi-path layer keeping only its first current, e.g.
    `network.layer_current` returning `currents[0]`, or a feedback path reading step t instead
    of t − 1): membranes, spikes and o[t] of `simulate` and spikes â[t] − λâ[t−1] and o[t] of
    the SAF forward equal a plain numpy LIF loop over the skip and feedback topologies."""
    net, params, inputs, _, layers, readout = _setup(architecture, leak, threshold, num_steps=4)
    expected = refs.lif_forward(layers, readout, inputs, leak, threshold)
    _assert_well_posed(expected, threshold)

    def library_forward(p, x):
        return (
            safjax.simulate.run(net, p, x),
            _library_membranes(net, p, x),
            identity_helpers.saf_forward(net, p, x),
        )

    (outputs, spikes), membranes, (saf_outputs, saf_spikes) = jax.jit(library_forward)(
        params, inputs
    )
    assert len(spikes) == len(expected["s"]) == len(membranes) == len(saf_spikes)
    for l, (s, u) in enumerate(zip(spikes, membranes)):
        np.testing.assert_array_equal(np.asarray(s), expected["s"][l], err_msg=f"spikes {l + 1}")
        np.testing.assert_allclose(np.asarray(u), expected["u"][l], **TOL, err_msg=f"u {l + 1}")
    np.testing.assert_allclose(np.asarray(outputs), expected["o"], **TOL)
    for l, s in enumerate(saf_spikes):
        np.testing.assert_allclose(np.asarray(s), expected["s"][l], **TOL, err_msg=f"SAF {l + 1}")
    np.testing.assert_allclose(np.asarray(saf_outputs), expected["o"], **TOL)


# ---------------------------------------------------------------- 2. optimizer update counts


class _CountState(NamedTuple):
    count: jax.Array
    inner: Any


def _counting(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """Wraps ``inner``; its state counts the calls to ``update``."""

    def init(params):
        return _CountState(jnp.zeros((), jnp.int32), inner.init(params))

    def update(updates, state, params=None):
        updates, inner_state = inner.update(updates, state.inner, params)
        return updates, _CountState(state.count + 1, inner_state)

    return optax.GradientTransformation(init, update)


COUNT_STEPS = 4  # T
COUNT_CASES = [  # (method, TrainConfig kwargs, expected updates per minibatch at T = 4)
    ("bptt", {}, 1),
    ("ottt_a", {}, 1),
    ("saf_f", {}, 1),
    ("spike_rep", {}, 1),
    ("ottt_o", {}, 4),  # T
    ("saf_e", {}, 4),  # T
    ("tbptt", {"truncation": 3}, 2),  # ⌈4/3⌉
]


@pytest.mark.parametrize(
    "name,config_kwargs,expected", COUNT_CASES,
    ids=[f"{n}-{'-'.join(f'{k}{v}' for k, v in c.items())}" for n, c, _ in COUNT_CASES],
)
def test_optimizer_updates_per_minibatch(name, config_kwargs, expected):
    """Guards mutation 2 (OTTT_O / SAF-E updating once per minibatch, e.g. `online.py`
    ignoring update_every_step; a one-update method such as OTTT_A updating T times; TBPTT not
    updating once per window): one `train_step` with a counting optimizer makes exactly the
    number of updates written in this test (not read from `updates_per_minibatch`)."""
    net = reference_nets.build("mlp", 0.5, 1.0)
    params, inputs, labels = reference_nets.params_and_data(net, COUNT_STEPS)
    optimizer = _counting(optax.sgd(0.1))
    train_step = safjax.get_method(name, **config_kwargs).train_step
    _, opt_state, _ = jax.jit(
        lambda p: train_step(
            net, p, optimizer.init(p), inputs, labels, optimizer=optimizer, config=safjax.TrainConfig()
        )
    )(params)
    assert int(opt_state.count) == expected


# ---------------------------------------------------------------- 3. H(0) = 1


def test_heaviside_is_one_at_zero():
    """Guards mutation 3 (strict H(z > 0) in `surrogates._heaviside_forward`): the spike
    function is 1 at z = 0 (and −0), 0 just below, for every surrogate family."""
    z = jnp.array([-1.0, -1e-300, -0.0, 0.0, 1e-300, 2.0], jnp.float64)
    expected = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    for factory in safjax.surrogates.SURROGATES.values():
        np.testing.assert_array_equal(np.asarray(factory()(z)), expected)


def test_lif_step_spikes_when_membrane_equals_threshold():
    """Guards mutation 3: `lif_step` spikes when u is exactly V_th, at t = 1 (I = V_th) and at
    t = 2 (u = λ·0.5 + 0.75 = 1 with λ = 0.5), for V_th = 1 and V_th = 0.5."""
    for threshold in (1.0, 0.5):
        config = safjax.lif(0.5, threshold)
        state = safjax.init_lif_state((1, 2), jnp.float64)
        # t = 1: neuron 0 gets exactly V_th, neuron 1 half of it.
        current = jnp.array([[1.0, 0.5]], jnp.float64) * threshold
        state, s = safjax.lif_step(config, state, current)
        np.testing.assert_array_equal(np.asarray(state.v), [[threshold, 0.5 * threshold]])
        np.testing.assert_array_equal(np.asarray(s), [[1.0, 0.0]])
        # t = 2: neuron 0: 0.5·(V_th − V_th) + 0.5 V_th; neuron 1: 0.5·0.5 V_th + 0.75 V_th = V_th.
        current = jnp.array([[0.5, 0.75]], jnp.float64) * threshold
        state, s = safjax.lif_step(config, state, current)
        np.testing.assert_array_equal(np.asarray(state.v), [[0.5 * threshold, threshold]])
        np.testing.assert_array_equal(np.asarray(s), [[0.0, 1.0]])


def _exact_threshold_net():
    """2 → 2 → 2 identity layers (λ = 0.5, V_th = 1, bias 0): every spike of the input below
    happens with u exactly V_th, in both layers, in dyadic (exact) arithmetic."""
    neuron = safjax.lif(0.5, 1.0)
    layers = [
        safjax.SpikingLayer((safjax.Path(0, (ops.Dense(2),)),), neuron),
        safjax.SpikingLayer((safjax.Path(1, (ops.Dense(2),)),), neuron),
    ]
    net = safjax.Network((2,), layers, (ops.Dense(2),))
    eye = {"kernel": jnp.eye(2, dtype=jnp.float64), "bias": jnp.zeros(2, jnp.float64)}
    readout = {"kernel": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "bias": jnp.array([0.25, -0.5])}
    params = {"layers": [[[eye]], [[eye]]], "readout": [readout]}
    inputs = jnp.array([[[1.0, 0.5]], [[0.5, 0.75]]], jnp.float64)  # [T=2, B=1, 2]
    return net, params, inputs


def test_network_and_saf_spike_when_membrane_equals_threshold():
    """Guards mutation 3 at network level: u = V_th exactly must spike in `simulate.run` and in
    the SAF forward (where the comparison is Û − V_th(λâ[t−1] + 1) = 0)."""
    net, params, inputs = _exact_threshold_net()
    layers, readout = refs.numpy_layers(params, refs.TOPOLOGY["mlp"])
    expected = refs.lif_forward(layers, readout, np.asarray(inputs), 0.5, 1.0)
    literal = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # [T, B, n], the same in both layers
    for l in range(2):
        np.testing.assert_array_equal(expected["s"][l], literal)
        np.testing.assert_array_equal(expected["u"][l].max(axis=-1), [[1.0], [1.0]])
    outputs, spikes = safjax.simulate.run(net, params, inputs)
    saf_outputs, saf_spikes = identity_helpers.saf_forward(net, params, inputs)
    for l in range(2):
        np.testing.assert_array_equal(np.asarray(spikes[l]), literal)
        np.testing.assert_array_equal(np.asarray(saf_spikes[l]), literal)
    np.testing.assert_allclose(np.asarray(outputs), expected["o"], **TOL)
    np.testing.assert_allclose(np.asarray(saf_outputs), expected["o"], **TOL)


# ---------------------------------------------------------------- 4. SR by its own formula


@functools.lru_cache(maxsize=None)
def _jitted_loss_and_grads(method, net, config):
    return jax.jit(lambda p, x, y: method.loss_and_grads(net, p, x, y, config))


def _grads_of(method, net, params, inputs, labels, config):
    (loss, _), grads = _jitted_loss_and_grads(method, net, config)(
        params, jnp.asarray(inputs), jnp.asarray(labels)
    )
    return float(loss), _to_numpy(grads)


@pytest.mark.parametrize("leak", first_fast([0.5, 1.0]))
@pytest.mark.parametrize("threshold", [1.0, 0.7])
def test_spike_rep_and_saf_f_gradients_equal_numpy_rate_backprop(leak, threshold):
    """Guards mutation 4 (SR wrong in a way SAF-F shares or copies: the 1/V_th of the band's
    derivative dropped, the surrogate used instead of the band, the band evaluated at the
    wrong point, the wrong rate normalisation): the loss and every gradient of SR and SAF-F
    equal a hand-written numpy backprop through a = clamp(pre/V_th, 0, 1) at the measured
    rates, with ∂a/∂pre = (1/V_th)·1[0 < pre/V_th < 1]."""
    net, params, inputs, labels, layers, readout = _setup("mlp", leak, threshold, num_steps=4)
    config = safjax.TrainConfig(mse_weight=0.05)
    loss, grads, details = refs.spike_rep_reference(
        layers, readout, inputs, labels, leak, threshold, config.mse_weight
    )
    _assert_well_posed(details["forward"], threshold)
    for l, (pre, mask) in enumerate(zip(details["pres"], details["masks"]), start=1):
        x = pre / threshold
        assert 0.0 < mask.mean() < 1.0, f"layer {l}: band all-in or all-out, test is vacuous"
        assert np.min(np.abs(x)) > 1e-9 and np.min(np.abs(x - 1.0)) > 1e-9, "pre on an edge"
    assert max(np.abs(g).max() for g in jax.tree_util.tree_leaves(grads)) > 1e-3
    for method in (spike_rep, saf_f):
        got_loss, got = _grads_of(method, net, params, inputs, labels, config)
        np.testing.assert_allclose(got_loss, loss, **GRAD_TOL)
        chex.assert_trees_all_close(got, grads, **GRAD_TOL)


# ---------------------------------------------------------------- 5. the band's edges


def test_band_clip_derivative_is_zero_on_both_edges():
    """Guards mutation 5 in `rate_map.band_clip` (non-strict edges, or plain `jnp.clip`, whose
    derivative is 1/2 at a bound): derivative 0 at x = 0 and x = upper, 1 strictly inside, 0
    outside; value = clip."""
    for upper in (1.0, 1.875, 4.0):
        x = jnp.array([-0.5, -0.0, 0.0, 1e-12, 0.5, upper - 1e-12, upper, upper + 0.5])
        derivative = jax.vmap(jax.grad(lambda v: rate_map.band_clip(v, upper)))(x)
        np.testing.assert_array_equal(np.asarray(derivative), [0, 0, 0, 1, 1, 1, 0, 0])
        forward = jax.vmap(jax.jacfwd(lambda v: rate_map.band_clip(v, upper)))(x)
        np.testing.assert_array_equal(np.asarray(forward), [0, 0, 0, 1, 1, 1, 0, 0])
        np.testing.assert_array_equal(
            np.asarray(rate_map.band_clip(x, upper)), np.clip(np.asarray(x), 0.0, upper)
        )


def _edge_params(net):
    """mlp params where layer-1 unit 0 has pre = 0 exactly (zero weights in, bias 0: it never
    fires) and unit 1 has pre = V_th exactly (zero weights in, bias V_th = 1: u = V_th every
    step, so it fires every step and its rate is 1), both feeding layer 2."""
    params, inputs, labels = reference_nets.params_and_data(net, 4, seed=1)
    layer = dict(params["layers"][0][0][0])
    layer["kernel"] = layer["kernel"].at[:, 0].set(0.0).at[:, 1].set(0.0)
    layer["bias"] = layer["bias"].at[0].set(0.0).at[1].set(1.0)
    params = {"layers": [[[layer]], params["layers"][1]], "readout": params["readout"]}
    return params, inputs, labels


@pytest.mark.parametrize("leak", [0.5, 1.0])
def test_gradient_through_units_on_the_band_edges_is_zero(leak):
    """Guards mutation 5 at network level (`rate_map.band_clip` replaced by `jnp.clip` in
    spike_rep.py or saf.py): a layer-1 unit with pre-activation exactly 0 (silent input, bias
    0) and one exactly at the top (rate 1, pre/V_th = 1) pass no gradient — their incoming
    weights and biases get exactly 0 — and all of SR's and SAF-F's gradients equal the numpy
    reference with strict edges."""
    net = reference_nets.build("mlp", leak, 1.0)
    params, inputs, labels = _edge_params(net)
    layers, readout = refs.numpy_layers(params, refs.TOPOLOGY["mlp"])
    config = safjax.TrainConfig(mse_weight=0.05)
    loss, grads, details = refs.spike_rep_reference(
        layers, readout, np.asarray(inputs), np.asarray(labels), leak, 1.0, config.mse_weight
    )
    rates = details["rates"][1]
    np.testing.assert_array_equal(rates[:, 0], 0.0)
    np.testing.assert_array_equal(rates[:, 1], 1.0)
    np.testing.assert_array_equal(details["pres"][0][:, 0], 0.0)
    np.testing.assert_array_equal(details["pres"][0][:, 1], 1.0)
    # Teeth: ∂loss/∂a^1 of the edge units is non-zero, so a derivative of 1/2 on the edges
    # (what `jnp.clip` gives) would hand their incoming weights a non-zero gradient.
    g_out = refs.ce_mse(details["logits"], labels, config.mse_weight)[1]
    delta1 = ((g_out @ readout[0].T) * details["masks"][1]) @ layers[1][0][2].T
    assert np.abs(delta1[:, :2]).max() > 1e-4, "edge units get no downstream gradient"
    layer1 = grads["layers"][0][0][0]
    np.testing.assert_array_equal(layer1["kernel"][:, :2], 0.0)
    np.testing.assert_array_equal(layer1["bias"][:2], 0.0)
    assert np.abs(layer1["kernel"][:, 2:]).max() > 1e-3
    for method in (spike_rep, saf_f):
        got_loss, got = _grads_of(method, net, params, inputs, labels, config)
        got_layer1 = got["layers"][0][0][0]
        np.testing.assert_array_equal(got_layer1["kernel"][:, :2], 0.0)
        np.testing.assert_array_equal(got_layer1["bias"][:2], 0.0)
        np.testing.assert_allclose(got_loss, loss, **GRAD_TOL)
        chex.assert_trees_all_close(got, grads, **GRAD_TOL)

