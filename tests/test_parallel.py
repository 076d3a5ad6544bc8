"""Data parallelism on forced CPU devices (see conftest): 4 devices equal 1 device."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import safjax
from safjax import parallel

import reference_nets
from budget import first_fast

pytestmark = pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 (forced CPU) devices")


def _step_and_args(method, mesh):
    net = reference_nets.build("conv", 0.9)
    params, _, _ = reference_nets.params_and_data(net, 4)
    key = jax.random.PRNGKey(7)
    inputs = jax.random.uniform(key, (4, 8) + net.input_shape, jnp.float64) * 1.5
    labels = jax.random.randint(key, (8,), 0, reference_nets.NUM_CLASSES)
    optimizer = optax.sgd(0.1, momentum=0.9)
    step = parallel.make_parallel_train_step(method, net, optimizer, mesh, safjax.TrainConfig())
    return step, (params, optimizer.init(params), inputs, labels, jax.random.key(0))


def _train(method, mesh, steps=3):
    step, (params, opt_state, inputs, labels, _) = _step_and_args(method, mesh)
    losses = []
    for _ in range(steps):
        params, opt_state, metrics = step(params, opt_state, inputs, labels)
        losses.append(metrics.loss)
    return params, np.array(losses)


# The default run keeps one method that updates after every step (SAF-E: an all-reduce and an
# update inside the time loop) and one that updates once per minibatch after a backward scan
# (BPTT); OTTT_A (accumulates inside the loop, one update) and SAF-F take the same two code paths
# of `parallel` and run in the slow suite.
@pytest.mark.parametrize("method", [
    "saf_e", pytest.param("ottt_a", marks=pytest.mark.slow), pytest.param("saf_f", marks=pytest.mark.slow),
    pytest.param("bptt", marks=pytest.mark.slow),
])
def test_four_devices_match_one_device(method):
    p1, l1 = _train(method, parallel.make_mesh(1))
    p4, l4 = _train(method, parallel.make_mesh(4))
    assert len(p4["readout"][-1]["kernel"].sharding.device_set) == 4  # replicated on all 4
    chex.assert_trees_all_close(p4, p1, atol=1e-10)
    np.testing.assert_allclose(l4, l1, rtol=1e-10)


def test_batch_not_divisible_by_devices_is_a_clear_error():
    net = reference_nets.build("mlp")
    params, inputs, labels = reference_nets.params_and_data(net, 2)  # batch 3
    optimizer = optax.sgd(0.1)
    step = parallel.make_parallel_train_step("saf_e", net, optimizer, parallel.make_mesh(2))
    with pytest.raises(ValueError, match="batch size 3 is not divisible by the 2 devices"):
        step(params, optimizer.init(params), inputs, labels)


def test_bad_device_count_is_a_clear_error():
    with pytest.raises(ValueError, match="`num_devices` must be an int in 1..4"):
        parallel.make_mesh(5)


@pytest.mark.parametrize("method,per_step", first_fast([("saf_e", True), ("bptt", False), ("ottt_o", True),
                                                        ("saf_f", False), ("spike_rep", False), ("ottt_a", False),
                                                        ("sltt", False)], keep=2))
def test_gradient_all_reduces_sit_where_the_updates_are(method, per_step):
    """Per-step-update methods must all-reduce inside the time loop (once per step); methods with
    one update per minibatch reduce once, after the loop, even where they accumulate gradients
    inside it (OTTT_A, BPTT's backward scan)."""
    step, args = _step_and_args(method, parallel.make_mesh(4))  # compiled only, not run
    counts = parallel.count_all_reduces(step.jitted.lower(*args).compile().as_text())
    if per_step:
        assert counts["in_loops"] >= 1, counts
    else:
        assert counts["in_loops"] == 0 and counts["outside_loops"] >= 1, counts
