"""Every registered method: one interface, jit-compiled once, learns, refuses what it must."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import safjax
from safjax import ops

import identity_helpers as helpers
import reference_nets
from budget import first_fast

METHOD_NAMES = list(safjax.METHODS)


def test_registry_holds_the_methods():
    assert set(METHOD_NAMES) == {"bptt", "tbptt", "ottt_a", "ottt_o", "saf_e", "saf_f", "spike_rep", "sltt", "sltt_k"}
    with pytest.raises(ValueError, match="valid methods: bptt, tbptt"):
        safjax.get_method("sgd")


def test_settings_come_from_the_factories_and_are_checked():
    assert list(safjax.methods.settings_of("tbptt")) == ["truncation", "block_size", "window_mode", "remat"]
    setting = safjax.methods.settings_of("tbptt")["truncation"]
    assert (setting.default, setting.type) == (0, int) and "window length K" in setting.help
    assert safjax.methods.settings_of("saf_e") == {}
    assert dict(safjax.get_method("tbptt", truncation=3).settings)["truncation"] == 3
    with pytest.raises(ValueError, match="method 'saf_e' has no setting truncation; it takes no settings"):
        safjax.get_method("saf_e", truncation=2)
    with pytest.raises(ValueError, match="`window_mode` must be one of"):
        safjax.get_method("tbptt", window_mode="sum")
    owners = safjax.methods.all_settings()["remat"][1]
    assert {"bptt", "tbptt"} <= set(owners)


@pytest.mark.parametrize("name,time_steps,updates", [
    ("bptt", 6, 1), ("saf_e", 6, 6), ("ottt_o", 5, 5), ("ottt_a", 6, 1), ("saf_f", 6, 1), ("spike_rep", 6, 1),
])
def test_updates_per_minibatch(name, time_steps, updates):
    assert safjax.get_method(name).updates_per_minibatch(time_steps) == updates


@pytest.mark.parametrize("settings,time_steps,updates", [
    ({}, 6, 1), ({"truncation": 2}, 6, 3), ({"truncation": 4}, 6, 2), ({"truncation": 9}, 6, 1),
    ({"truncation": 2, "window_mode": "accumulate"}, 6, 1),  # one update however many windows
])
def test_tbptt_updates_per_minibatch(settings, time_steps, updates):
    assert safjax.get_method("tbptt", **settings).updates_per_minibatch(time_steps) == updates


# Every method compiles once and learns on the mlp in the default run; on the conv net, BPTT (the
# spike path) and SAF-E (the trace path) do; the other seven conv cases repeat covered paths and run
# in the slow suite (with every method's step on test_nn's conv model).
_DEFAULT_CONV = ("bptt", "saf_e")


@pytest.mark.parametrize("architecture,method", [
    pytest.param(a, m, id=f"{a}-{m}", marks=pytest.mark.slow if a == "conv" and m not in _DEFAULT_CONV else ())
    for a in ("mlp", "conv") for m in METHOD_NAMES
])
def test_method_compiles_once_and_learns(method, architecture):
    net = reference_nets.build(architecture)
    params, inputs, labels = reference_nets.params_and_data(net, 4)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), params)
    inputs = inputs.astype(jnp.float32)
    optimizer = optax.adam(3e-2)
    settings = {"truncation": 2} if "truncation" in safjax.methods.settings_of(method) else {}
    step = safjax.make_train_step(safjax.get_method(method, **settings), net, optimizer)
    opt_state = optimizer.init(params)
    losses = []
    for _ in range(15):
        params, opt_state, metrics = step(params, opt_state, inputs, labels)
        losses.append(float(metrics.loss))
    assert step._cache_size() == 1
    chex.assert_tree_all_finite(params)
    chex.assert_trees_all_equal_dtypes(params, jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), params))
    chex.assert_shape(metrics.outputs, (reference_nets.BATCH, reference_nets.NUM_CLASSES))
    assert len(metrics.firing_rates) == net.num_layers
    assert all(0.0 <= float(r) <= 1.0 for r in metrics.firing_rates)
    assert losses[-1] < 0.85 * losses[0], losses


def _net_with(op=None, **neuron):
    chain = [op, ops.Flatten(), ops.Dense(6)] if op else [ops.Dense(6)]
    in_shape = (4, 4, 2) if op else (5,)
    layer = safjax.SpikingLayer([safjax.Path(0, chain)], safjax.lif(**neuron))
    return safjax.Network(in_shape, [layer], [ops.Dense(3)])


def _run(method, net):
    params = safjax.init_params(net, jax.random.PRNGKey(0))
    optimizer = optax.sgd(0.1)
    inputs = jnp.ones((2, 2) + net.input_shape)
    return safjax.get_method(method).train_step(
        net, params, optimizer.init(params), inputs, jnp.zeros((2,), jnp.int32),
        optimizer=optimizer, config=safjax.TrainConfig(),
    )


@pytest.mark.parametrize("method", ["saf_e", "saf_f", "ottt_a", "ottt_o", "spike_rep"])
def test_trace_methods_refuse_max_pooling(method):
    with pytest.raises(ValueError, match=r"linear, time-invariant operators.*\['MaxPool'\]"):
        _run(method, _net_with(ops.MaxPool(2)))


@pytest.mark.parametrize("method", first_fast(["bptt", "tbptt"]))
def test_spike_methods_accept_max_pooling(method):
    _, _, metrics = _run(method, _net_with(ops.MaxPool(2)))
    assert np.isfinite(metrics.loss)


@pytest.mark.parametrize("method", ["saf_e", "saf_f", "spike_rep"])
def test_saf_refuses_hard_reset(method):
    with pytest.raises(ValueError, match="soft .*reset"):
        _run(method, _net_with(reset="hard"))


def test_ottt_accepts_hard_reset():
    _, _, metrics = _run("ottt_o", _net_with(reset="hard"))
    assert np.isfinite(metrics.loss)


def test_bad_input_shape_is_reported_before_compiling():
    net = reference_nets.build("mlp")
    params = safjax.init_params(net, jax.random.PRNGKey(0))
    step = safjax.make_train_step("saf_e", net, optax.sgd(0.1))
    with pytest.raises(ValueError, match="`inputs` must be time-major"):
        step(params, optax.sgd(0.1).init(params), jnp.ones((4, 3, 10)), jnp.zeros((3,), jnp.int32))


@pytest.mark.parametrize("kwargs,match", [({"mse_weight": 1.5}, "`mse_weight`"), ({"unroll": 0}, "`unroll`")])
def test_bad_train_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        safjax.TrainConfig(**kwargs)


def _params_after_one_step(method, config, architecture="conv", num_steps=5, **settings):
    return _one_step(method, config, architecture, num_steps, tuple(sorted(settings.items())))


# Cached: the plain BPTT step on the conv net (T = 5) is the reference of two tests below and the one
# on the mlp of three; each is compiled once.
@functools.lru_cache(maxsize=None)
def _one_step(method, config, architecture, num_steps, settings):
    settings = dict(settings)
    net = reference_nets.build(architecture, 0.9)
    params, inputs, labels = reference_nets.params_and_data(net, num_steps)
    optimizer = optax.sgd(0.3, momentum=0.9)
    step = safjax.make_train_step(safjax.get_method(method, **settings), net, optimizer, config)
    return params, step(params, optimizer.init(params), inputs, labels)


@pytest.mark.parametrize("method", first_fast(["bptt", "saf_e", "ottt_o", "saf_f"]))
def test_unrolled_time_loop_equals_scan(method):
    _, (p_scan, _, m_scan) = _params_after_one_step(method, safjax.TrainConfig())
    _, (p_unrolled, _, m_unrolled) = _params_after_one_step(method, safjax.TrainConfig(unroll=True))
    chex.assert_trees_all_close(p_scan, p_unrolled, atol=1e-10)
    np.testing.assert_allclose(m_scan.loss, m_unrolled.loss, rtol=1e-12)


@pytest.mark.parametrize("num_steps", first_fast([5, 9]))  # prime: per-step chunks; 9: three chunks of 3
def test_bptt_rematerialisation_gives_the_same_update(num_steps):
    _, (p_plain, _, m_plain) = _params_after_one_step("bptt", safjax.TrainConfig(), num_steps=num_steps)
    _, (p_remat, _, m_remat) = _params_after_one_step(
        "bptt", safjax.TrainConfig(), num_steps=num_steps, remat=True
    )
    chex.assert_trees_all_close(p_plain, p_remat, atol=1e-12)
    np.testing.assert_allclose(m_plain.outputs, m_remat.outputs, rtol=1e-12)


@pytest.mark.parametrize("num_steps,chunk", [(1, 1), (4, 2), (6, 3), (7, 1), (9, 3), (12, 4), (32, 4), (36, 6)])
def test_remat_chunk_is_a_divisor_near_the_square_root(num_steps, chunk):
    assert safjax.methods.bptt.remat_chunk(num_steps) == chunk


@pytest.mark.parametrize("truncation", first_fast([2, 1, 3]))
def test_truncated_windows_change_the_update_and_handle_remainders(truncation):
    params, (p_bptt, _, m_bptt) = _params_after_one_step("bptt", safjax.TrainConfig(), "mlp")
    _, (p_tbptt, _, m_tbptt) = _params_after_one_step(
        "tbptt", safjax.TrainConfig(), "mlp", truncation=truncation, window_mode="accumulate"
    )
    # The forward is untouched by truncation (accumulate mode: same weights for all windows) …
    np.testing.assert_allclose(m_tbptt.loss, m_bptt.loss, rtol=1e-12)
    np.testing.assert_allclose(m_tbptt.outputs, m_bptt.outputs, rtol=1e-12)
    # … but the gradient is truncated, so the update differs from BPTT's.
    assert helpers.max_abs_difference(p_tbptt, p_bptt) > 1e-6
