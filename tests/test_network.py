"""Network description: shape inference and clear errors for inconsistent graphs and inputs."""

import jax
import jax.numpy as jnp
import pytest

import safjax
from safjax import network, ops

import reference_nets
from budget import first_fast


@pytest.mark.parametrize("architecture", first_fast(reference_nets.ARCHITECTURES, keep=2))
def test_params_match_declared_shapes(architecture):
    net = reference_nets.build(architecture)
    params = safjax.init_params(net, jax.random.PRNGKey(0))
    outputs, spikes = safjax.simulate.run(net, params, jnp.ones((2, 3) + net.input_shape))
    assert outputs.shape == (2, 3, net.num_classes)
    assert [s.shape[2:] for s in spikes] == list(net.layer_shapes)


def _layer(*paths):
    return safjax.SpikingLayer([safjax.Path(s, o) for s, o in paths])


def test_mismatched_paths_raise():
    with pytest.raises(ValueError, match="paths into one layer must agree"):
        safjax.Network((4,), [_layer((0, [ops.Dense(3)])), _layer((1, [ops.Dense(2)]), (0, [ops.Dense(3)]))],
                       [ops.Dense(2)])


def test_layer_without_forward_path_raises():
    with pytest.raises(ValueError, match="no path from an earlier layer"):
        safjax.Network((4,), [_layer((1, [ops.Dense(4)]))], [ops.Dense(2)])


def test_bad_source_raises():
    with pytest.raises(ValueError, match="valid sources are 0"):
        safjax.Network((4,), [_layer((0, [ops.Dense(4)]), (5, []))], [ops.Dense(2)])


def test_readout_must_produce_class_scores():
    with pytest.raises(ValueError, match="readout must end in a vector"):
        safjax.Network((4, 4, 1), [_layer((0, [ops.Conv(2)]))], [])


def test_empty_network_raises():
    with pytest.raises(ValueError, match="`layers` is empty"):
        safjax.Network((4,), [], [ops.Dense(2)])


def test_check_inputs_names_the_argument_and_shape():
    net = reference_nets.build("mlp")
    good_labels = jnp.zeros((3,), jnp.int32)
    with pytest.raises(ValueError, match=r"`inputs` must be time-major with shape \('T', 'B', 12\)"):
        network.check_inputs(net, jnp.ones((3, 12)), good_labels)
    with pytest.raises(ValueError, match=r"`labels` must have shape \(B,\)"):
        network.check_inputs(net, jnp.ones((2, 3, 12)), jnp.zeros((4,), jnp.int32))
    with pytest.raises(ValueError, match="integer class indices"):
        network.check_inputs(net, jnp.ones((2, 3, 12)), jnp.zeros((3,)))


def test_mixed_leaks_are_refused_by_trace_methods():
    layers = [_layer((0, [ops.Dense(4)])),
              safjax.SpikingLayer([safjax.Path(1, [ops.Dense(4)])], safjax.lif(0.9))]
    net = safjax.Network((4,), layers, [ops.Dense(2)])
    with pytest.raises(ValueError, match="one leak λ shared by all layers"):
        network.uniform_leak(net, "saf_e")
