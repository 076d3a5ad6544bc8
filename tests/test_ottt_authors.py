"""OTTT in its authors' convention (docs/methods.md §3.4), `ottt_a(convention="authors")` and
`ottt_o(convention="authors")`, against a reference written here from the equations in plain
jax.numpy (float64), which uses no safjax method code: per step,

    δ^o[t] = ∂L[t]/∂o[t],   δ^2[t] = (δ^o W_oᵀ)·h(u^2[t] − V_th),   δ^1[t] = (δ^2 W_2ᵀ)·h(u^1[t] − V_th)
    ∇W_1 = x[t]ᵀ δ^1,   ∇W_2 = â^1[t]ᵀ δ^2,   ∇W_o = â^2[t]ᵀ δ^o,   ∇b = Σ_batch δ

(δ through step t's spatial path only, h the sigmoid surrogate), where the default convention has
â^0[t] for x[t] and c_t·δ for the biases."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import safjax
from safjax.methods import get_method

import reference_nets

LEAK, THRESHOLD, ALPHA, NUM_STEPS = 0.9, 0.7, 4.0, 4


def _setup():
    net = reference_nets.build("mlp", LEAK, THRESHOLD, surrogate=safjax.surrogates.sigmoid(ALPHA))
    params, inputs, labels = reference_nets.params_and_data(net, NUM_STEPS, 0, THRESHOLD)
    return net, params, inputs, labels


def _unpack(params):
    """safjax's MLP params → [(W, b)] for layer 1, layer 2, readout."""
    return [(p["kernel"], p["bias"]) for p in
            (params["layers"][0][0][0], params["layers"][1][0][0], params["readout"][0])]


def _pack(like, weights):
    (w1, b1), (w2, b2), (wo, bo) = weights
    return {"layers": [[[{"kernel": w1, "bias": b1}]], [[{"kernel": w2, "bias": b2}]]],
            "readout": [{"kernel": wo, "bias": bo}]}


def _h(z):
    sig = 1.0 / (1.0 + jnp.exp(-ALPHA * z))
    return ALPHA * sig * (1.0 - sig)


def reference_authors_gradients(weights, inputs, labels, learning_rate=None):
    """Per-step authors' gradients [(∇W, ∇b)] × 3 for t = 1..T; with ``learning_rate`` each step's
    gradient is applied (plain SGD) before the next step, as OTTT_O does. Returns (per-step
    gradients, final weights)."""
    batch, classes = inputs.shape[1], weights[-1][0].shape[1]
    u = [jnp.zeros((batch, w.shape[1])) for w, _ in weights[:2]]
    s = [jnp.zeros_like(v) for v in u]
    traces = [jnp.zeros_like(v) for v in u]
    onehot = jax.nn.one_hot(labels, classes, dtype=inputs.dtype)
    gradients = []
    for x in inputs:
        (w1, b1), (w2, b2), (wo, bo) = weights
        signals = [x]
        for layer, (w, b) in enumerate(((w1, b1), (w2, b2))):
            u[layer] = LEAK * (u[layer] - THRESHOLD * s[layer]) + signals[-1] @ w + b
            s[layer] = (u[layer] >= THRESHOLD).astype(x.dtype)
            traces[layer] = LEAK * traces[layer] + s[layer]
            signals.append(s[layer])
        o = s[1] @ wo + bo
        delta_o = (jax.nn.softmax(o) - onehot) / batch / NUM_STEPS  # ∂(CE mean over batch / T)/∂o
        delta_2 = (delta_o @ wo.T) * _h(u[1] - THRESHOLD)
        delta_1 = (delta_2 @ w2.T) * _h(u[0] - THRESHOLD)
        step = [(x.T @ delta_1, delta_1.sum(0)), (traces[0].T @ delta_2, delta_2.sum(0)),
                (traces[1].T @ delta_o, delta_o.sum(0))]
        gradients.append(step)
        if learning_rate is not None:
            weights = [(w - learning_rate * gw, b - learning_rate * gb) for (w, b), (gw, gb) in zip(weights, step)]
    return gradients, weights


def _train(method, net, params, inputs, labels, learning_rate):
    optimizer = optax.sgd(learning_rate)
    return jax.jit(lambda p: method.train_step(
        net, p, optimizer.init(p), inputs, labels, optimizer=optimizer,
        config=safjax.TrainConfig(mse_weight=0.0))[0])(params)


def _close(tree_a, tree_b):
    for a, b in zip(jax.tree_util.tree_leaves(tree_a), jax.tree_util.tree_leaves(tree_b)):
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=1e-10)


def test_ottt_a_authors_equals_the_summed_reference_gradients():
    net, params, inputs, labels = _setup()
    rates = [float(np.mean(np.asarray(s))) for s in safjax.simulate.run(net, params, inputs)[1]]
    assert all(0.05 < r < 0.95 for r in rates), rates  # every layer fires: the check is not vacuous
    per_step, _ = reference_authors_gradients(_unpack(params), inputs, labels)
    summed = [tuple(sum(step[k][j] for step in per_step) for j in range(2)) for k in range(3)]
    trained = _train(get_method("ottt_a", convention="authors"), net, params, inputs, labels, 1.0)
    expected = jax.tree_util.tree_map(jnp.subtract, params, _pack(params, summed))  # params − Σ_t ∇
    _close(trained, expected)


def test_ottt_o_authors_equals_the_reference_updated_every_step():
    net, params, inputs, labels = _setup()
    _, final = reference_authors_gradients(_unpack(params), inputs, labels, learning_rate=0.5)
    trained = _train(get_method("ottt_o", convention="authors"), net, params, inputs, labels, 0.5)
    _close(trained, _pack(params, final))


def test_the_default_convention_differs_from_the_authors_in_the_first_layer_and_the_biases_only():
    """The trace form (default) pairs δ^1 with â^0[t] and weights the biases by c_t: after one
    OTTT_A minibatch W_1 and every bias differ from the authors', W_2 and W_o do not."""
    net, params, inputs, labels = _setup()
    default = _unpack(_train(get_method("ottt_a"), net, params, inputs, labels, 1.0))
    authors = _unpack(_train(get_method("ottt_a", convention="authors"), net, params, inputs, labels, 1.0))
    assert np.max(np.abs(default[0][0] - authors[0][0])) > 1e-3
    for (_, b_default), (_, b_authors) in zip(default, authors):
        assert np.max(np.abs(b_default - b_authors)) > 1e-3
    for k in (1, 2):
        np.testing.assert_allclose(default[k][0], authors[k][0], atol=1e-12)


def test_convention_is_a_setting_and_a_flag_of_both_ottt_methods():
    assert safjax.methods.all_settings()["convention"][1] == ("ottt_a", "ottt_o")
    assert dict(get_method("ottt_o", convention="authors").settings) == {"convention": "authors"}
    assert safjax.methods.parse_spec("ottt_a:convention=authors") == ("ottt_a", {"convention": "authors"})
    with pytest.raises(ValueError, match="`convention` must be one of safjax, authors, got 'author'"):
        get_method("ottt_o", convention="author")
