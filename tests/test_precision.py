"""Mixed precision (safjax/precision.py): bf16 operands in the synaptic operators, f32 everywhere
else; what it approximates, and that a bf16 run learns like an f32 one."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import safjax
from safjax import ops, precision, simulate

import reference_nets


def test_only_synaptic_operators_change():
    net = reference_nets.build("conv")
    assert precision.with_precision(net, "f32") is net
    mixed = precision.with_precision(net, "bf16")
    for op, original in zip(mixed.all_ops(), net.all_ops()):
        assert getattr(op, "compute_dtype", None) == ("bfloat16" if original.synaptic else None)
    with pytest.raises(ValueError, match="`precision` must be one of f32, bf16"):
        precision.with_precision(net, "fp8")


@pytest.mark.parametrize("op", [ops.Dense(7), ops.Conv(5, 3)], ids=["dense", "conv"])
def test_spikes_are_exact_and_only_the_weights_are_rounded(op):
    """On binary spikes a bf16 operator equals the f32 operator with bf16-rounded weights: the
    spikes lose nothing, the products are summed in f32 (docs: safjax/precision.py)."""
    shape = (6,) if isinstance(op, ops.Dense) else (6, 6, 3)
    params = op.init(jax.random.PRNGKey(0), shape, jnp.float32)
    spikes = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (4,) + shape).astype(jnp.float32)
    mixed = type(op)(**{**op.__dict__, "compute_dtype": "bfloat16"})
    y = mixed.apply(params, spikes)
    assert y.dtype == jnp.float32
    rounded = {**params, "kernel": params["kernel"].astype(jnp.bfloat16).astype(jnp.float32)}
    np.testing.assert_allclose(y, op.apply(rounded, spikes), rtol=1e-6, atol=1e-6)
    assert not np.allclose(y, op.apply(params, spikes), rtol=1e-6, atol=1e-6)  # the weights were rounded


@pytest.mark.parametrize("method", [  # SAF and BPTT by default; the others in the slow run
    "saf_e", pytest.param("bptt", marks=pytest.mark.slow), pytest.param("ottt_a", marks=pytest.mark.slow), pytest.param("saf_f", marks=pytest.mark.slow),
    pytest.param("sltt", marks=pytest.mark.slow)])
def test_every_method_trains_in_bf16_with_f32_state(method):
    net = reference_nets.build("conv")
    params, inputs, labels = reference_nets.params_and_data(net, 4)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), params)
    inputs = inputs.astype(jnp.float32)
    optimizer = optax.adam(1e-2)
    plain = safjax.make_train_step(method, net, optimizer)(params, optimizer.init(params), inputs, labels)
    mixed = safjax.make_train_step(method, precision.with_precision(net, "bf16"), optimizer)(
        params, optimizer.init(params), inputs, labels)
    floats = [leaf for leaf in jax.tree_util.tree_leaves(mixed[:2]) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    assert floats and all(leaf.dtype == jnp.float32 for leaf in floats)  # params and optimizer state
    assert mixed[2].loss.dtype == jnp.float32
    np.testing.assert_allclose(mixed[2].loss, plain[2].loss, rtol=2e-2)


@pytest.mark.slow  # two 10-epoch runs
def test_a_bf16_run_reaches_the_f32_runs_accuracy():
    """The digits job (10 epochs, 360 test examples: σ ≈ 1 point at 97 %) in f32 and bf16."""
    from safjax import trainer
    from safjax.experiment_config import ExperimentConfig

    results = {p: trainer.train_and_evaluate(ExperimentConfig(precision=p, num_devices=1, log_every=1000))
               for p in ("f32", "bf16")}
    f32, bf16 = (results[p]["test_accuracy"] for p in ("f32", "bf16"))
    assert f32 > 0.95 and abs(bf16 - f32) <= 0.02, (f32, bf16)
