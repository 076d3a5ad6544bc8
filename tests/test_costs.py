"""Costs (docs/methods.md §5.6): synaptic evaluations counted in the traced program; compiled temp memory
flat in T for the online methods and growing for BPTT."""

import jax
import jax.numpy as jnp
import optax
import pytest

import safjax
from safjax import costs
from safjax.methods import ottt, saf_e

import reference_nets
from budget import first_fast


def test_counting_helper_on_a_hand_built_program():
    w = jnp.ones((4, 4))
    k = jnp.ones((3, 3, 2, 2))

    def program(x, img):
        def body(carry, _):  # a scan body is one program region: its ops count once
            return carry @ w @ w, None
        y, _ = jax.lax.scan(body, x, None, length=5)
        z = jax.lax.conv_general_dilated(img, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y.sum() + jnp.tanh(z).sum() + jax.checkpoint(lambda v: (v @ w).sum())(x)

    assert costs.count_synaptic_evaluations(program, jnp.ones((2, 4)), jnp.ones((1, 5, 5, 2))) == 4


def test_matmul_flops_multiply_scan_bodies_by_their_length():
    w = jnp.ones((4, 6))
    k = jnp.ones((3, 3, 2, 5))

    def program(x, img):
        y, _ = jax.lax.scan(lambda c, _: (c + (x @ w).sum(), None), 0.0, None, length=7)
        z = jax.lax.conv_general_dilated(img, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + z.sum()

    expected = 7 * 2 * (2 * 6 * 4) + 2 * (1 * 5 * 5 * 5) * (2 * 3 * 3)
    assert costs.count_matmul_flops(program, jnp.ones((2, 4)), jnp.ones((1, 5, 5, 2))) == expected
    # Under jax.grad the backward pass's matmuls count too.
    grad_flops = costs.count_matmul_flops(jax.grad(lambda x: program(x, jnp.ones((1, 5, 5, 2)))), jnp.ones((2, 4)))
    assert grad_flops > expected


@pytest.mark.parametrize("architecture", first_fast(reference_nets.ARCHITECTURES))
def test_saf_evaluates_each_synaptic_operator_once_and_ottt_twice(architecture):
    net = reference_nets.build(architecture)
    params, inputs, labels = reference_nets.params_and_data(net, 2)
    config = safjax.TrainConfig()
    args = (params, inputs[0], labels)
    saf_count = costs.count_synaptic_evaluations(
        lambda p, x, y: saf_e.make_step_loss(net, config, 2)(p, safjax.methods.saf.init_state(net, 3, x.dtype), x, y), *args
    )
    ottt_count = costs.count_synaptic_evaluations(
        lambda p, x, y: ottt.make_step_loss(net, config, 2)(p, ottt.init_state(net, 3, x.dtype), x, y), *args
    )
    weighted = net.num_synaptic_ops()
    assert weighted >= 3
    assert saf_count == weighted
    assert ottt_count == 2 * weighted


def _temp_bytes(method, net, num_steps):
    params, inputs, labels = reference_nets.params_and_data(net, num_steps)
    optimizer = optax.sgd(0.1)
    settings = {"truncation": 2} if "truncation" in safjax.methods.settings_of(method) else {}
    train_step = safjax.get_method(method, **settings).train_step

    def step(p, s, x, y):
        return train_step(net, p, s, x, y, optimizer=optimizer, config=safjax.TrainConfig())

    return costs.compiled_memory(step, params, optimizer.init(params), inputs, labels)["temp_bytes"]


# Flat memory is a property of a method's time loop: the default run checks SAF-E (mlp and conv) and
# OTTT_O (mlp), and BPTT's growth (below); every other method and the conv cases run in the slow suite.
_DEFAULT_FLAT_CASES = {("mlp", "saf_e"), ("mlp", "ottt_o"), ("conv", "saf_e")}


@pytest.mark.parametrize("architecture,method", [
    pytest.param(a, m, id=f"{a}-{m}", marks=() if (a, m) in _DEFAULT_FLAT_CASES else pytest.mark.slow)
    for a in ("mlp", "conv") for m in ("ottt_a", "ottt_o", "saf_e", "saf_f", "spike_rep", "tbptt")
])
def test_online_methods_use_memory_flat_in_time(method, architecture):
    net = reference_nets.build(architecture)
    short, long = _temp_bytes(method, net, 4), _temp_bytes(method, net, 32)
    assert long <= 1.1 * short, (short, long)


@pytest.mark.parametrize("architecture", first_fast(["mlp", "conv"]))
def test_bptt_memory_grows_with_time(architecture):
    net = reference_nets.build(architecture)
    short, long = _temp_bytes("bptt", net, 4), _temp_bytes("bptt", net, 32)
    assert long >= 3 * short, (short, long)
