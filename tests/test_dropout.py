"""Dropout with one mask per minibatch, held over T (docs/methods.md §1.7, §5.9)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import safjax
from safjax import dropout, models, nn, ops, simulate
from safjax.methods import ottt_o, saf_e

import identity_helpers
import reference_nets
from budget import first_fast

RATE = 0.3


def _net_with_dropout(leak=0.5):
    """mlp 12 → 16 → 12 → 5 with dropout on layer 1's spikes into layer 2 and on the readout's input."""
    neuron = safjax.lif(leak)
    layers = [
        safjax.SpikingLayer([safjax.Path(0, [ops.Dense(16)])], neuron),
        safjax.SpikingLayer([safjax.Path(1, [dropout.Dropout(RATE), ops.Dense(12)])], neuron),
    ]
    return safjax.Network((12,), layers, [dropout.Dropout(RATE), ops.Dense(reference_nets.NUM_CLASSES)])


def _data(net, num_steps=6):
    plain = reference_nets.build("mlp")  # same parameter shapes, without the dropout entries
    params, inputs, labels = reference_nets.params_and_data(plain, num_steps)
    layers = [params["layers"][0], [[{}] + params["layers"][1][0]]]
    return {"layers": layers, "readout": [{}] + params["readout"]}, inputs, labels


def test_the_mask_is_fixed_for_a_key_and_scaled():
    op = dropout.Dropout(RATE, key=jax.random.key(3))
    x = jnp.ones((64, 512))
    first, second = op.apply({}, x), op.apply({}, 2 * x)
    np.testing.assert_array_equal(2 * first, second)  # the same mask on every call
    assert set(np.unique(np.asarray(first))) == {0.0, 1 / (1 - RATE)}
    assert abs(float(jnp.mean(first == 0)) - RATE) < 0.01
    other = dropout.Dropout(RATE, key=jax.random.key(4)).apply({}, x)
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(dropout.Dropout(RATE).apply({}, x), x)  # unbound: identity


@pytest.mark.parametrize("rate", [-0.1, 1.0, "0.1"])
def test_bad_rate_is_refused(rate):
    with pytest.raises(ValueError, match="Dropout: `rate` must lie in \\[0, 1\\)"):
        dropout.Dropout(rate)


def test_binding_gives_each_dropout_its_own_stream():
    net = dropout.bind(_net_with_dropout(), jax.random.key(0))
    bound = [op for op in net.all_ops() if isinstance(op, dropout.Dropout)]
    assert [op.salt for op in bound] == [0, 1]
    x = jnp.ones((8, 16))
    assert not np.array_equal(bound[0].apply({}, x), bound[1].apply({}, x))
    assert dropout.bind(reference_nets.build("mlp"), jax.random.key(0)) == reference_nets.build("mlp")


def test_dropout_changes_training_forward_not_evaluation():
    net = _net_with_dropout()
    params, inputs, _ = _data(net)
    plain, _ = simulate.run(net, params, inputs)
    reference, _ = simulate.run(reference_nets.build("mlp"), reference_nets.params_and_data(
        reference_nets.build("mlp"), 6)[0], inputs)
    np.testing.assert_array_equal(plain, reference)  # unbound: exactly the net without dropout
    dropped, _ = simulate.run(dropout.bind(net, jax.random.key(0)), params, inputs)
    assert not np.allclose(dropped, plain)


@pytest.mark.parametrize("leak", first_fast([0.5, 1.0]))
def test_a_mask_fixed_over_time_keeps_the_accumulation_identity(leak):
    """§5.9: SAF's forward equals the spiking net's, and SAF-E's per-step gradients OTTT's, with
    the same masks (float64)."""
    net = dropout.bind(_net_with_dropout(leak), jax.random.key(1))
    params, inputs, labels = _data(net)
    outputs, spikes = simulate.run(net, params, inputs)
    identity_helpers.assert_layers_fire(spikes)
    saf_outputs, saf_spikes = identity_helpers.saf_forward(net, params, inputs)
    for ours, theirs in zip(saf_spikes, spikes):
        np.testing.assert_allclose(ours, theirs, atol=1e-12)
    np.testing.assert_allclose(saf_outputs, outputs, atol=1e-10)
    config = safjax.TrainConfig(mse_weight=0.05)
    g_saf = saf_e.step_gradients(net, params, inputs, labels, config)
    g_ottt = ottt_o.step_gradients(net, params, inputs, labels, config)
    assert identity_helpers.max_abs(g_ottt) > 1e-3
    assert identity_helpers.max_abs_difference(g_saf, g_ottt) < 1e-12


def test_a_mask_redrawn_every_step_breaks_it():
    """The reason for fixing the mask: redrawn per step, SAF's accumulated input is no longer the
    accumulation of the masked spikes, and its spikes differ from the spiking net's."""
    net = _net_with_dropout()
    params, inputs, _ = _data(net)
    keys = jax.random.split(jax.random.key(1), inputs.shape[0])

    def spiking_net(state, xs):
        x_t, key = xs
        return simulate.network_step(dropout.bind(net, key), params, state, x_t)

    _, (_, redrawn) = jax.lax.scan(spiking_net, simulate.init_network_state(net, inputs.shape[1], inputs.dtype),
                                   (inputs, keys))
    _, fixed = identity_helpers.saf_forward(dropout.bind(net, keys[0]), params, inputs)
    assert not np.allclose(redrawn[1], fixed[1])


def test_the_step_needs_a_key_and_draws_from_it():
    net = _net_with_dropout()
    params, inputs, labels = _data(net)
    optimizer = optax.sgd(0.5)
    step = safjax.make_train_step("saf_e", net, optimizer)
    with pytest.raises(ValueError, match="draws random numbers every minibatch: pass a fresh `key`"):
        step(params, optimizer.init(params), inputs, labels)
    a, _, _ = step(params, optimizer.init(params), inputs, labels, jax.random.key(0))
    b, _, _ = step(params, optimizer.init(params), inputs, labels, jax.random.key(0))
    c, _, _ = step(params, optimizer.init(params), inputs, labels, jax.random.key(1))
    chex.assert_trees_all_equal(a, b)
    assert identity_helpers.max_abs_difference(a, c) > 1e-6


def test_models_insert_dropout_after_every_neuron_only_when_asked():
    with_dropout = models.digits_mlp(nnx.Rngs(0), dropout=0.1).network
    without = models.digits_mlp(nnx.Rngs(0)).network
    assert [type(op).__name__ for op in with_dropout.readout] == ["Dropout", "Dense"]
    assert without == models.digits_mlp(nnx.Rngs(0), dropout=0.0).network
    assert not dropout.has_dropout(without) and dropout.has_dropout(with_dropout)
    vgg = models.vgg11_sws(nnx.Rngs(0), width=0.125, dropout=0.1).network
    count = sum(isinstance(op, dropout.Dropout) for op in vgg.all_ops())
    assert count == vgg.num_layers  # one per spiking layer: 7 into the next layer, 1 into the readout
    assert isinstance(nn.Dropout(0.1).op, dropout.Dropout)
    with pytest.raises(ValueError, match="`dropout` must be a rate in"):
        models.digits_mlp(nnx.Rngs(0), dropout=1.0)


@pytest.mark.slow
def test_trainer_trains_with_dropout_and_the_dvs_preset_sets_it(tmp_path):
    from experiments import presets
    from safjax import trainer
    from safjax.experiment_config import ExperimentConfig

    assert presets.resolve("cifar10_dvs_vgg", {}).dropout == 0.1
    settings = dict(epochs=1, num_devices=1, train_examples=256, test_examples=128)
    dropped = trainer.train_and_evaluate(ExperimentConfig(dropout=0.3, **settings))
    plain = trainer.train_and_evaluate(ExperimentConfig(**settings))
    assert np.isfinite(dropped["train_loss_history"]).all() and dropped["dropout"] == 0.3
    assert dropped["train_loss_history"] != plain["train_loss_history"]
