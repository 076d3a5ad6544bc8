"""Surrogates: Heaviside forward, the documented derivative backward, validated factories."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from safjax import surrogates

Z = jnp.linspace(-2.0, 2.0, 41, dtype=jnp.float64)


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


# Formulas written out independently of the implementation.
FORMULAS = {
    ("sigmoid", 4.0): lambda z: 4.0 * _sig(4.0 * z) * (1 - _sig(4.0 * z)),
    ("sigmoid", 2.0): lambda z: 2.0 * _sig(2.0 * z) * (1 - _sig(2.0 * z)),
    ("atan", 2.0): lambda z: 1.0 / (1.0 + (math.pi * z) ** 2),
    ("atan", 1.0): lambda z: 0.5 / (1.0 + (math.pi / 2 * z) ** 2),
    ("rectangle", 1.0): lambda z: (np.abs(z) < 0.5).astype(float),
    ("rectangle", 0.5): lambda z: (np.abs(z) < 0.25) * 2.0,
    ("triangle", 1.0): lambda z: np.maximum(0.0, 1.0 - np.abs(z)),
    ("triangle", 2.0): lambda z: np.maximum(0.0, 1.0 - np.abs(z) / 2.0) / 2.0,
}


@pytest.mark.parametrize("name,scale", list(FORMULAS), ids=[f"{n}-{s}" for n, s in FORMULAS])
def test_surrogate_forward_is_heaviside_and_gradient_matches_formula(name, scale):
    key = "width" if name in ("rectangle", "triangle") else "alpha"
    surrogate = surrogates.get(name, **{key: scale})
    z = Z + 1e-3  # keep rectangle edges off the grid
    spikes = surrogate(z)
    chex.assert_trees_all_equal(spikes, (z >= 0).astype(z.dtype))
    chex.assert_type(spikes, jnp.float64)
    grads = jax.vmap(jax.grad(surrogate))(z)
    np.testing.assert_allclose(grads, FORMULAS[(name, scale)](np.asarray(z)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(surrogates.SURROGATES))
def test_every_surrogate_integrates_to_one(name):
    z = np.linspace(-60.0, 60.0, 1_200_001)
    derivative = np.asarray(surrogates.get(name).derivative(jnp.asarray(z)))
    assert abs(np.trapezoid(derivative, z) - 1.0) < 2e-2


def test_defaults_follow_the_spec():
    assert surrogates.sigmoid().scale == 4.0
    assert jax.grad(surrogates.sigmoid())(0.0) == pytest.approx(1.0)  # α/4 at z = 0


@pytest.mark.parametrize("factory,arg", [(surrogates.sigmoid, "alpha"), (surrogates.atan, "alpha"),
                                         (surrogates.rectangle, "width"), (surrogates.triangle, "width")])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_scale_raises_naming_the_argument(factory, arg, bad):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        factory(bad)


def test_unknown_surrogate_lists_valid_names():
    with pytest.raises(ValueError, match="sigmoid"):
        surrogates.get("relu")


def test_surrogate_is_hashable_for_jit():
    assert hash(surrogates.sigmoid(4.0)) == hash(surrogates.sigmoid(4.0))
    assert surrogates.sigmoid(4.0) != surrogates.sigmoid(2.0)
