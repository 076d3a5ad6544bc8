"""The identities of docs/methods.md §5, swept over four architectures, λ ∈ {0.5, 0.9, 1.0} and
V_th ∈ {1.0, 0.7}, with biases, in float64."""

from __future__ import annotations

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import safjax
from safjax.methods import bptt, ottt_a, ottt_o, saf_e, saf_f, spike_rep, tbptt

import identity_helpers as helpers
import minibatch_gap
import reference_nets
from budget import first_fast

NUM_STEPS = 4
# The default run covers the mlp, the conv net and the feedback net (the skip net in the slow suite),
# each leak (0.5, 0.9, 1.0) and both thresholds — three of the 24 combinations; the full product runs
# in the slow suite. Every case has every layer firing (checked in the forward test).
DEFAULT_CASES = {("mlp", 0.5, 1.0), ("feedback", 0.9, 0.7), ("conv", 1.0, 0.7)}


def _case(architecture, leak, threshold):
    marks = () if (architecture, leak, threshold) in DEFAULT_CASES else (pytest.mark.slow,)
    return pytest.param(architecture, leak, threshold, marks=marks,
                        id=f"{architecture}-leak{leak}-vth{threshold}")


CASES = [
    _case(architecture, leak, threshold)
    for architecture in reference_nets.ARCHITECTURES
    for leak, threshold in itertools.product((0.5, 0.9, 1.0), (1.0, 0.7))
]
assert {leak for _, leak, _ in DEFAULT_CASES} == {0.5, 0.9, 1.0} and {v for _, _, v in DEFAULT_CASES} == {1.0, 0.7}
TOL = dict(atol=1e-10, rtol=1e-10)


def _setup(architecture, leak, threshold, num_steps=NUM_STEPS, seed=0):
    net = reference_nets.build(architecture, leak, threshold)
    params, inputs, labels = reference_nets.params_and_data(net, num_steps, seed, threshold)
    return net, params, inputs, labels


# Speed: the five swept identities below read the methods' results for one (architecture, λ, V_th)
# from ONE jit-compiled program, computed once (a compile costs ~10× the run; before, each test
# compiled its own pieces and SAF-E's and OTTT_O's per-step gradients were compiled twice).
# Each test still asserts only its own identity on those results.
@functools.lru_cache(maxsize=None)
def _results(architecture, leak, threshold):
    net, params, inputs, labels = _setup(architecture, leak, threshold)
    config, sgd = safjax.TrainConfig(), optax.sgd(1.0)

    @jax.jit
    def run_all(params):
        return {
            "lif": safjax.simulate.run(net, params, inputs),  # (outputs, spikes)
            "saf": helpers.saf_forward(net, params, inputs),  # (outputs, spikes)
            "ottt_outputs": helpers.ottt_forward(net, params, inputs, labels),
            "saf_e_grads": saf_e.step_gradients(net, params, inputs, labels, config),
            "ottt_o_grads": ottt_o.step_gradients(net, params, inputs, labels, config),
            "ottt_a_params": ottt_a.train_step(
                net, params, sgd.init(params), inputs, labels, optimizer=sgd, config=config
            )[0],
            "saf_f": saf_f.loss_and_grads(net, params, inputs, labels, config),
            "spike_rep": spike_rep.loss_and_grads(net, params, inputs, labels, config),
        }

    return (net, params, inputs, labels, config), run_all(params)


@pytest.mark.parametrize("architecture,leak,threshold", CASES)
def test_forward_saf_spikes_and_outputs_equal_lif_and_ottt(architecture, leak, threshold):
    """§5.1: SAF spikes â[t] − λâ[t−1] = LIF spikes at every layer and step; o[t] agree."""
    _, results = _results(architecture, leak, threshold)
    lif_outputs, lif_spikes = results["lif"]
    helpers.assert_layers_fire(lif_spikes)
    saf_outputs, saf_spikes = results["saf"]
    for lif_s, saf_s in zip(lif_spikes, saf_spikes):
        np.testing.assert_allclose(saf_s, lif_s, atol=1e-9)  # spikes are 0/1: no flips
    np.testing.assert_allclose(saf_outputs, lif_outputs, **TOL)
    np.testing.assert_allclose(results["ottt_outputs"], lif_outputs, **TOL)


@pytest.mark.parametrize("architecture,leak,threshold", CASES)
def test_theorem1_per_step_saf_e_gradient_equals_ottt(architecture, leak, threshold):
    """§5.2: ∇L[t] of SAF-E equals OTTT's for every parameter and every step."""
    _, results = _results(architecture, leak, threshold)
    saf_grads, ottt_grads = results["saf_e_grads"], results["ottt_o_grads"]
    assert helpers.max_abs(saf_grads) > 1e-4, "vacuous: gradients vanish"
    chex.assert_trees_all_close(saf_grads, ottt_grads, **TOL)


@pytest.mark.parametrize("architecture,leak,threshold", CASES)
def test_ottt_equals_explicit_delta_trace_formula(architecture, leak, threshold):
    """§5.3: the two-evaluation trick gives δ^l[t]·â^{l−1}[t]ᵀ (and δ·c_t for biases), with δ
    from BPTT with u[t−1] detached, computed independently in `identity_helpers`."""
    (net, params, inputs, labels, config), results = _results(architecture, leak, threshold)
    reference = helpers.reference_ottt_step_gradients(
        net, params, inputs, labels, config.mse_weight
    )
    chex.assert_trees_all_close(results["ottt_o_grads"], reference, **TOL)


@pytest.mark.parametrize("architecture,leak,threshold", CASES)
def test_sum_of_saf_e_gradients_equals_ottt_a(architecture, leak, threshold):
    """§5.2: Σ_t ∇SAF-E[t] = ∇OTTT_A (read off one plain-SGD update with learning rate 1)."""
    (_, params, _, _, _), results = _results(architecture, leak, threshold)
    summed = jax.tree_util.tree_map(lambda g: g.sum(0), results["saf_e_grads"])
    ottt_a_grads = jax.tree_util.tree_map(jnp.subtract, params, results["ottt_a_params"])
    chex.assert_trees_all_close(summed, ottt_a_grads, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("architecture,leak,threshold", CASES)
def test_theorem2_saf_f_gradient_equals_spike_representation(architecture, leak, threshold):
    """§5.4: ∇SAF-F = 1 · ∇SR (1/V_th pseudo-derivative convention; V_th ≠ 1 is in the sweep)."""
    _, results = _results(architecture, leak, threshold)
    (loss_f, (out_f, _)), grads_f = results["saf_f"]
    (loss_sr, (out_sr, _)), grads_sr = results["spike_rep"]
    assert helpers.max_abs(grads_sr) > 1e-4, "vacuous: gradients vanish"
    np.testing.assert_allclose(loss_f, loss_sr, **TOL)
    np.testing.assert_allclose(out_f, out_sr, **TOL)
    chex.assert_trees_all_close(grads_f, grads_sr, **TOL)


def _train_steps(steps, net, params, inputs, labels, optimizer):
    """One jit-compiled program making one update from ``params`` with each (train_step, config)."""
    return jax.jit(lambda p: [
        step(net, p, optimizer.init(p), inputs, labels, optimizer=optimizer, config=config)
        for step, config in steps
    ])(params)


@functools.lru_cache(maxsize=None)
def _full_window_steps(architecture):
    """{window_mode: (TBPTT with K = T, BPTT)}, one update each, all four in one compile."""
    net, params, inputs, labels = _setup(architecture, 0.9, 1.0)
    optimizer = optax.sgd(0.5, momentum=0.9)
    steps = []
    for window_mode in ("update", "accumulate"):
        config = tbptt.TBPTTConfig(truncation=NUM_STEPS, window_mode=window_mode)
        steps += [(tbptt.train_step, config), (bptt.train_step, config)]
    results = _train_steps(steps, net, params, inputs, labels, optimizer)
    return params, {"update": results[0:2], "accumulate": results[2:4]}


@pytest.mark.parametrize("architecture", first_fast(reference_nets.ARCHITECTURES))
@pytest.mark.parametrize("window_mode", ["update", "accumulate"])
def test_tbptt_with_full_window_equals_bptt(architecture, window_mode):
    """§5.5: truncated BPTT with K = T is BPTT (same update, same loss)."""
    params, results = _full_window_steps(architecture)
    (p_t, _, m_t), (p_b, _, m_b) = results[window_mode]
    assert helpers.max_abs_difference(params, p_b) > 1e-4
    chex.assert_trees_all_close(p_t, p_b, **TOL)
    np.testing.assert_allclose(m_t.loss, m_b.loss, **TOL)


@pytest.mark.parametrize("architecture", first_fast(reference_nets.ARCHITECTURES))
def test_whole_minibatch_saf_e_equals_ottt_o_at_one_step(architecture):
    """§5.2, whole step: with T = 1 one SAF-E update equals one OTTT_O update exactly."""
    net, params, inputs, labels = _setup(architecture, 0.5, 1.0, num_steps=1)
    optimizer, config = optax.sgd(0.1, momentum=0.9), safjax.TrainConfig()
    (p_saf, _, m_saf), (p_ottt, _, m_ottt) = _train_steps(
        [(saf_e.train_step, config), (ottt_o.train_step, config)], net, params, inputs, labels, optimizer
    )
    chex.assert_trees_all_close(p_saf, p_ottt, **TOL)
    np.testing.assert_allclose(m_saf.loss, m_ottt.loss, **TOL)


@pytest.mark.parametrize("architecture", first_fast(reference_nets.ARCHITECTURES))
def test_whole_minibatch_saf_e_and_ottt_o_differ_at_second_order_while_no_spike_flips(architecture):
    """§5.2 / §4.6, whole step with T > 1 updates. Exact equality does not hold: after the update
    at step t, OTTT's u[t+1] still carries λ·W_old·s[t] while SAF recomputes Û = W_new·â, so the
    next forward differs by O(lr) and — as long as both runs fire the same spikes — the parameters
    after T updates by O(lr²). So first check that no spike flips between the two runs, then that
    the difference shrinks 100× when lr shrinks 10× (the first update is identical, above)."""
    net, params, inputs, labels = _setup(architecture, 0.5, 1.0)
    config = safjax.TrainConfig()

    @jax.jit  # the learning rate is an argument: one compile serves both rates
    def both_updates(learning_rate):
        optimizer = optax.sgd(learning_rate)
        trained = [
            step(net, params, optimizer.init(params), inputs, labels, optimizer=optimizer, config=config)[0]
            for step in (saf_e.train_step, ottt_o.train_step)
        ]
        # The same minibatches with their spike trains (SAF-E's trajectory re-run to tie them to it).
        p_again, _ = minibatch_gap.sgd_minibatch("saf_e", net, params, inputs, labels, learning_rate)
        return trained, p_again, minibatch_gap.gap_and_flips(net, params, inputs, labels, learning_rate)[1]

    def gap(learning_rate):
        (p_saf, p_ottt), p_again, flips = both_updates(jnp.asarray(learning_rate, jnp.float64))
        chex.assert_trees_all_close(p_again, p_saf, **TOL)
        assert int(flips) == 0, f"lr {learning_rate}: {int(flips)} spikes flip; the O(lr²) rule does not apply"
        return helpers.max_abs_difference(p_saf, p_ottt)

    large, small = gap(1e-5), gap(1e-6)
    assert large > 0.0
    assert 30.0 < large / small < 300.0, (large, small)


def test_whole_minibatch_gap_is_larger_than_second_order_once_a_spike_flips():
    """§4.6: once a spike differs between the two runs the O(lr²) rule no longer holds (the
    flipped spike changes the next step's gradient by O(1), the parameters by O(lr)). The MLP
    with λ = 1, V_th = 0.7 flips one spike at lr = 0.01 (tests/minibatch_gap.py's table): its gap
    is well above the second-order extrapolation from lr = 1e-4, where nothing flips."""
    net, params, inputs, labels = _setup("mlp", 1.0, 0.7)
    measure = jax.jit(lambda lr: minibatch_gap.gap_and_flips(net, params, inputs, labels, lr))
    (gap_small, flips_small), (gap_large, flips_large) = (measure(jnp.asarray(lr, jnp.float64)) for lr in (1e-4, 1e-2))
    assert int(flips_small) == 0 and int(flips_large) > 0, (int(flips_small), int(flips_large))
    assert float(gap_large) > 5.0 * 100.0**2 * float(gap_small), (float(gap_large), float(gap_small))
