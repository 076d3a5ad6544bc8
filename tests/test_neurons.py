"""LIF/IF step functions against the recursion written out by hand (docs/methods.md §1)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import safjax
from safjax import neurons


def _reference(currents, leak, threshold, reset):
    v, s, spikes, potentials = 0.0, 0.0, [], []
    for current in currents:
        v = leak * (v - threshold * s) + current if reset == "soft" else leak * v * (1 - s) + current
        s = float(v >= threshold)
        potentials.append(v)
        spikes.append(s)
    return np.array(potentials), np.array(spikes)


@pytest.mark.parametrize("leak", [0.5, 0.9, 1.0])
@pytest.mark.parametrize("threshold", [1.0, 0.7])
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_lif_step_follows_the_recursion(leak, threshold, reset):
    currents = np.random.default_rng(0).uniform(0.0, 1.5, size=(20, 7))
    config = neurons.lif(leak, threshold, reset)
    state = neurons.init_lif_state((7,), jnp.float64)
    vs, ss = [], []
    for current in currents:
        state, s = neurons.lif_step(config, state, jnp.asarray(current))
        vs.append(state.v)
        ss.append(s)
    for column in range(7):
        v_ref, s_ref = _reference(currents[:, column], leak, threshold, reset)
        np.testing.assert_allclose(np.array(vs)[:, column], v_ref, atol=1e-12)
        np.testing.assert_array_equal(np.array(ss)[:, column], s_ref)
    assert 0.05 < np.mean(ss) < 0.95


def test_if_is_lif_with_unit_leak():
    assert neurons.integrate_and_fire(0.7) == neurons.lif(1.0, 0.7)
    assert safjax.nn.IF(0.7).config == safjax.nn.LIF(1.0, 0.7).config


def test_state_shapes_and_dtypes():
    state = neurons.init_lif_state((2, 3), jnp.float32)
    state, s = neurons.lif_step(neurons.lif(), state, jnp.ones((2, 3), jnp.float32) * 2)
    chex.assert_shape([state.v, state.s, s], (2, 3))
    chex.assert_type([state.v, s], jnp.float32)


def test_detach_reset_changes_only_the_gradient():
    config, detached = neurons.lif(0.9), neurons.lif(0.9, detach_reset=True)

    def potential_after_two_steps(scale, config):
        state = neurons.init_lif_state((1,), jnp.float64)
        state, _ = neurons.lif_step(config, state, scale * jnp.array([1.2]))
        state, _ = neurons.lif_step(config, state, jnp.array([0.3]))
        return state.v[0]

    value = potential_after_two_steps(1.0, config)
    assert value == potential_after_two_steps(1.0, detached)
    g, g_detached = (jax.grad(potential_after_two_steps)(1.0, c) for c in (config, detached))
    # d u[2]/d scale = λ·1.2·(1 − V_th·σ'(u[1] − V_th)) with the reset path; λ·1.2 without.
    sigma = neurons.lif().surrogate.derivative(jnp.asarray(0.2))
    np.testing.assert_allclose(g_detached, 0.9 * 1.2, rtol=1e-12)
    np.testing.assert_allclose(g, 0.9 * 1.2 * (1 - sigma), rtol=1e-12)


@pytest.mark.parametrize("leak", [0.0, -0.5, 1.5, float("nan")])
def test_bad_leak_raises_with_valid_range(leak):
    with pytest.raises(ValueError, match=r"`leak` must lie in \(0, 1\]"):
        neurons.lif(leak=leak)


@pytest.mark.parametrize("threshold", [0.0, -1.0, float("inf")])
def test_bad_threshold_raises(threshold):
    with pytest.raises(ValueError, match="`threshold` must be a finite number > 0"):
        neurons.lif(threshold=threshold)


def test_bad_reset_and_surrogate_raise():
    with pytest.raises(ValueError, match="`reset`"):
        neurons.lif(reset="zero")
    with pytest.raises(ValueError, match="`surrogate`"):
        neurons.LIFConfig(surrogate="sigmoid")
