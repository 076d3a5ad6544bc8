"""NIR export and import (docs/deploy.md): exact round trips for hard-reset nets, the soft-reset
refusal, the approximate export, and the conventions (λ ↔ τ, layouts) checked by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("nir")

import nir  # noqa: E402

import safjax  # noqa: E402
from safjax import nir as nir_lib  # noqa: E402
from safjax import ops, simulate  # noqa: E402
from budget import first_fast


def _layer(paths, neuron):
    return safjax.SpikingLayer(tuple(safjax.Path(s, tuple(o)) for s, o in paths), neuron)


def _conv_net(reset="hard", leak=0.9):
    """8×8×2 → conv 4 → (avg-pool, sWS conv 6) + feedback from layer 3 → (×2.74, conv 6) + skip 1×1
    from layer 2 → ×2.74, flatten, dense 5: pooling, a skip and a feedback connection."""
    neuron = safjax.lif(leak, 1.0, reset=reset)
    return safjax.Network((8, 8, 2), [
        _layer([(0, [ops.Conv(4, 3)])], neuron),
        _layer([(1, [ops.AvgPool(2), ops.ScaledWSConv(6, 3)]), (3, [ops.Scale(0.5), ops.Conv(6, 3)])], neuron),
        _layer([(2, [ops.Scale(2.74), ops.Conv(6, 3)]), (2, [ops.Conv(6, 1)])], neuron),
    ], [ops.Scale(2.74), ops.Flatten(), ops.Dense(5)])


def _data(net, seed=0):
    """float32 params and inputs: NIR files hold float32 weights, and the round trip is exact in float32."""
    params = safjax.init_params(net, jax.random.PRNGKey(seed), jnp.float32)
    params = jax.tree_util.tree_map(lambda p: 2.0 * p if p.ndim > 1 else p + 0.1, params)
    inputs = 1.5 * jax.random.uniform(jax.random.PRNGKey(seed + 1), (6, 4) + net.input_shape, jnp.float32)
    return params, inputs


def _round_trip(net, params, tmp_path, **kwargs):
    exported = nir_lib.export(net, params, **kwargs)
    path = str(tmp_path / "net.nir")
    nir_lib.write(path, exported.graph)
    return exported, nir_lib.to_network(nir_lib.read(path))


@pytest.mark.parametrize("fold_scales", first_fast([True, False]))
def test_hard_reset_conv_net_round_trips_with_identical_spikes(fold_scales, tmp_path):
    net = _conv_net()
    params, inputs = _data(net)
    outputs, spikes = simulate.run(net, params, inputs)
    rates = [float(s.mean()) for s in spikes]
    assert all(0.02 < r < 0.9 for r in rates), rates  # an identity on silent layers proves nothing
    exported, (net2, params2) = _round_trip(net, params, tmp_path, fold_scales=fold_scales)
    outputs2, spikes2 = simulate.run(net2, params2, inputs)
    for ours, theirs in zip(spikes, spikes2, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    if fold_scales:  # scales folded into the weights: the same sums in another order
        np.testing.assert_allclose(outputs2, outputs, rtol=1e-5, atol=1e-5)
    else:  # the same operators: the same arithmetic
        np.testing.assert_array_equal(outputs2, outputs)
    assert [p.source for p in net2.layers[1].paths] == [1, 3]  # the feedback edge reads layer 3 at t − 1
    assert exported.node_count == len(exported.graph.nodes)


@pytest.mark.parametrize("fold_scales", first_fast([True, False]))
def test_a_global_average_pool_readout_round_trips(fold_scales, tmp_path):
    """VGG-11's readout (×2.74, global average pool, dense): SumPool2d over the whole map + Flatten
    with 1/(H·W) folded into the dense weights, or AvgPool2d + Flatten unfolded."""
    neuron = safjax.lif(0.9, 1.0, reset="hard")
    net = safjax.Network((8, 8, 2), [_layer([(0, [ops.Conv(4, 3)])], neuron)],
                         [ops.Scale(2.74), ops.GlobalAvgPool(), ops.Dense(5)])
    params, inputs = _data(net)
    outputs, spikes = simulate.run(net, params, inputs)
    assert 0.02 < float(spikes[0].mean()) < 0.9
    exported, (net2, params2) = _round_trip(net, params, tmp_path, fold_scales=fold_scales)
    kinds = [type(node).__name__ for name, node in exported.graph.nodes.items() if name.startswith("readout.1")]
    assert kinds == (["SumPool2d", "Flatten"] if fold_scales else ["AvgPool2d", "Flatten"])
    np.testing.assert_allclose(simulate.run(net2, params2, inputs)[0], outputs, rtol=1e-5, atol=1e-5)


def test_soft_reset_is_refused_naming_the_options_and_exported_approximately_on_request(tmp_path):
    net = _conv_net(reset="soft")
    params, inputs = _data(net)
    with pytest.raises(ValueError, match=r"soft \(subtractive\) reset.*reset='zero'.*reset='hard'"):
        nir_lib.export(net, params)
    exported, (net2, params2) = _round_trip(net, params, tmp_path, reset="zero")
    assert len(exported.approximations) == 3
    assert all(layer.neuron.reset == "hard" for layer in net2.layers)
    hard = _conv_net(reset="hard")  # the graph is exactly the hard-reset net with these weights
    np.testing.assert_array_equal(simulate.run(net2, params2, inputs)[1][-1], simulate.run(hard, params, inputs)[1][-1])
    soft_spikes = simulate.run(net, params, inputs)[1]
    assert not np.array_equal(soft_spikes[-1], simulate.run(net2, params2, inputs)[1][-1])  # it is an approximation


def test_lif_parameters_follow_the_stated_discretisation():
    """τ·dv/dt = −v + r·I stepped by Euler with dt is v ← (1 − dt/τ)·v + (dt/τ)·r·I: our
    u[t] = λ u[t−1] + I[t] needs τ = dt/(1 − λ), r = 1/(1 − λ); exact decay needs τ = −dt/ln λ."""
    net = safjax.Network((3,), [_layer([(0, [ops.Dense(4)])], safjax.lif(0.8, 0.7, reset="hard"))], [ops.Dense(2)])
    params = safjax.init_params(net, jax.random.PRNGKey(0))
    lif = nir_lib.export(net, params, dt=1e-3).graph.nodes["layer1.neuron"]
    np.testing.assert_allclose(lif.tau, 1e-3 / 0.2)
    np.testing.assert_allclose(lif.r, 5.0)
    np.testing.assert_allclose(1 - 1e-3 / lif.tau, 0.8)  # the decay per step
    np.testing.assert_allclose(1e-3 / lif.tau * lif.r, 1.0)  # the input enters unscaled
    np.testing.assert_array_equal(lif.v_threshold, 0.7)
    np.testing.assert_array_equal(lif.v_reset, 0.0)
    exact = nir_lib.export(net, params, discretisation="exact").graph.nodes["layer1.neuron"]
    np.testing.assert_allclose(np.exp(-nir_lib.DEFAULT_DT / exact.tau), 0.8)
    integrate_and_fire = safjax.Network((3,), [_layer([(0, [ops.Dense(4)])], safjax.integrate_and_fire(reset="hard"))],
                                        [ops.Dense(2)])
    node = nir_lib.export(integrate_and_fire, params).graph.nodes["layer1.neuron"]
    assert isinstance(node, nir.IF) and np.allclose(node.r * nir_lib.DEFAULT_DT, 1.0)


def test_layouts_are_nirs(tmp_path):
    """Conv2d weights OIHW, Affine [out, in], and the dense layer after a flatten reads C·H·W order."""
    net = safjax.Network((4, 4, 2), [_layer([(0, [ops.Conv(3, 3)])], safjax.lif(0.5, reset="hard"))],
                         [ops.Flatten(), ops.Dense(5)])
    params = safjax.init_params(net, jax.random.PRNGKey(2))
    graph = nir_lib.export(net, params).graph
    conv = graph.nodes["layer1.path0.0.conv"]
    np.testing.assert_array_equal(conv.weight, np.transpose(params["layers"][0][0][0]["kernel"], (3, 2, 0, 1)))
    dense = graph.nodes["readout.1.dense"]
    assert dense.weight.shape == (5, 4 * 4 * 3)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (4, 4, 3)))  # one example, H·W·C
    ours = x.reshape(-1) @ np.asarray(params["readout"][1]["kernel"])
    theirs = dense.weight @ x.transpose(2, 0, 1).reshape(-1)  # NIR flattens C·H·W
    np.testing.assert_allclose(theirs, ours, rtol=1e-5)


@pytest.mark.parametrize("build, match", [
    (lambda: safjax.Network((4, 4, 1), [_layer([(0, [ops.Conv(2, 3)])], safjax.lif(reset="hard"))],
                            [ops.MaxPool(2), ops.Flatten(), ops.Dense(2)]), "MaxPool has no NIR 1.0 node"),
    (lambda: safjax.Network((4,), [_layer([(0, [ops.Dense(3)])], safjax.neurons.alif())], [ops.Dense(2)]),
     "ALIF.*NIR 1.0 has no node"),
])
def test_what_nir_cannot_express_is_refused_in_one_line(build, match):
    net = build()
    with pytest.raises(ValueError, match=match):
        nir_lib.export(net, safjax.init_params(net, jax.random.PRNGKey(0)), reset="zero")
