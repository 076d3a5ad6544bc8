"""Flax NNX wrappers: one model description, every method, params round-trip, clear errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import safjax
from safjax import nn, ops
from budget import first_fast


def _model(rngs):
    return nn.Sequential(
        nn.Conv(2, 4, rngs=rngs), nn.LIF(0.9),
        nn.AvgPool(2), nn.ScaledWSConv(4, 6, rngs=rngs),
        nn.Skip(1, nn.AvgPool(2), nn.Conv(4, 6, 1, rngs=rngs)),
        nn.Feedback(-1, nn.Scale(0.3)), nn.LIF(0.9),
        nn.Scale(2.74), nn.GlobalAvgPool(), nn.Dense(6, 5, rngs=rngs),
        input_shape=(8, 8, 2),
    )


def test_sequential_describes_layers_paths_and_readout():
    net = _model(nnx.Rngs(0)).network
    assert net.num_layers == 2 and net.layer_shapes == ((8, 8, 4), (4, 4, 6))
    second = net.layers[1]
    assert [p.source for p in second.paths] == [1, 1, 2]  # main, skip from layer 1, feedback
    assert isinstance(second.paths[0].ops[1], ops.ScaledWSConv)
    assert [type(op) for op in net.readout] == [ops.Scale, ops.GlobalAvgPool, ops.Dense]
    assert second.neuron.leak == 0.9 and net.num_classes == 5


def test_params_round_trip_and_match_module_values():
    model = _model(nnx.Rngs(0))
    params = model.params()
    chex.assert_trees_all_equal_structs(params, safjax.init_params(model.network, jax.random.PRNGKey(0)))
    np.testing.assert_array_equal(params["layers"][0][0][0]["kernel"], model.modules[0].kernel[...])
    doubled = jax.tree_util.tree_map(lambda p: 2 * p, params)
    model.load_params(doubled)
    chex.assert_trees_all_close(model.params(), doubled)


@pytest.mark.parametrize("method", first_fast(["saf_e", "bptt"] + [m for m in safjax.METHODS if m not in ("saf_e", "bptt")], keep=2))
def test_one_model_trains_with_every_method(method):
    model = _model(nnx.Rngs(0))
    params = model.params()
    optimizer = optax.sgd(0.1)
    images = jax.random.uniform(jax.random.PRNGKey(1), (3, 8, 8, 2))
    step = safjax.make_train_step(method, model.network, optimizer)
    new_params, _, metrics = step(params, optimizer.init(params), safjax.encoding.direct(images, 3), jnp.array([0, 1, 2]))
    assert np.isfinite(metrics.loss)
    model.load_params(new_params)
    chex.assert_trees_all_close(model.params(), new_params)


def test_model_call_is_the_spiking_inference_network():
    model = _model(nnx.Rngs(0))
    inputs = jax.random.uniform(jax.random.PRNGKey(1), (3, 2, 8, 8, 2))
    expected, _ = safjax.simulate.run(model.network, model.params(), inputs)
    chex.assert_trees_all_close(model(inputs), expected)


def test_neuron_module_steps_like_the_pure_function():
    neuron = nn.LIF(0.5, 0.8)
    state = safjax.init_lif_state((4,))
    current = jnp.array([0.1, 0.9, 1.5, 0.0])
    chex.assert_trees_all_close(neuron(state, current), safjax.lif_step(neuron.config, state, current))


def test_operator_module_applies_its_op():
    rngs = nnx.Rngs(0)
    dense = nn.Dense(3, 2, rngs=rngs)
    x = jnp.ones((4, 3))
    np.testing.assert_allclose(dense(x), x @ dense.kernel[...] + dense.bias[...], rtol=1e-6)


@pytest.mark.parametrize("build,match", [
    (lambda r: nn.Sequential(nn.Dense(3, 4, rngs=r), nn.LIF(), nn.Skip(2, nn.Dense(4, 4, rngs=r)),
                             nn.LIF(), nn.Dense(4, 2, rngs=r), input_shape=(3,)), "use Feedback"),
    (lambda r: nn.Sequential(nn.Dense(3, 4, rngs=r), nn.Feedback(0, nn.Dense(3, 4, rngs=r)), nn.LIF(),
                             nn.Dense(4, 2, rngs=r), input_shape=(3,)), "use Skip"),
    (lambda r: nn.Sequential(nn.Dense(3, 4, rngs=r), nn.LIF(), nn.Skip(0), input_shape=(3,)),
     "must come before a neuron"),
    (lambda r: nn.Sequential(nn.Dense(3, 4, rngs=r), nn.LIF(), "relu", input_shape=(3,)),
     "safjax.nn modules only"),
    (lambda r: nn.Sequential(nn.Dense(3, 4, rngs=r), nn.LIF(), nn.Dense(5, 2, rngs=r), input_shape=(3,)),
     "check its in_features"),
    (lambda r: nn.LIF(leak=2.0), "`leak`"),
])
def test_bad_models_raise_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build(nnx.Rngs(0))
