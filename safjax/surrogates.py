"""Surrogate gradients: Heaviside forward, a smooth pseudo-derivative backward.

Every surrogate is a frozen, hashable object (a static argument to `jax.jit`) built by a factory,
`sigmoid(alpha=4.0)` like `optax.sgd(lr)`. Calling it on ``z = u - V_th`` returns spikes
``H(z) = 1[z >= 0]`` in the dtype of ``z``; its VJP multiplies the cotangent by
``surrogate.derivative(z)``. The scale convention of each family is written next to its formula,
because libraries disagree on them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def _check_positive(name: str, value: float, family: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(
            f"{family} surrogate: `{name}` must be a finite number > 0, got {value!r}."
        )


@dataclasses.dataclass(frozen=True)
class Surrogate:
    """A Heaviside step with a pseudo-derivative.

    Attributes:
      name: family name, e.g. ``"sigmoid"``.
      scale: the family's shape parameter (``alpha`` or ``width``).
      derivative_fn: ``(z, scale) -> dH/dz`` surrogate, elementwise.
    """

    name: str
    scale: float
    derivative_fn: Callable[[Array, float], Array] = dataclasses.field(repr=False)

    def derivative(self, z: Array) -> Array:
        """Pseudo-derivative at ``z = u - V_th`` (any shape, same shape out)."""
        return self.derivative_fn(z, self.scale)

    def __call__(self, z: Array) -> Array:
        """Spikes ``1[z >= 0]`` with the surrogate gradient; ``z`` any shape."""
        return _heaviside(self, jnp.asarray(z))


def _heaviside_forward(z: Array) -> Array:
    return (z >= 0).astype(z.dtype)


def _heaviside_fwd(surrogate: Surrogate, z: Array):
    return _heaviside_forward(z), z


def _heaviside_bwd(surrogate: Surrogate, z: Array, g: Array):
    return (g * surrogate.derivative(z).astype(g.dtype),)


# The surrogate is static (hashable), so it is a non-differentiable argument.
_heaviside = jax.custom_vjp(lambda surrogate, z: _heaviside_forward(z), nondiff_argnums=(0,))
_heaviside.defvjp(_heaviside_fwd, _heaviside_bwd)


def _sigmoid_derivative(z: Array, alpha: float) -> Array:
    sig = jax.nn.sigmoid(alpha * z)
    return alpha * sig * (1.0 - sig)


def sigmoid(alpha: float = 4.0) -> Surrogate:
    """Logistic surrogate (SpikingJelly's ``Sigmoid`` convention).

    dH/dz ≈ α·sig(αz)·(1 − sig(αz)): the derivative of sig(αz); peak α/4 at z = 0, integral 1.
    """
    _check_positive("alpha", alpha, "sigmoid")
    return Surrogate("sigmoid", float(alpha), _sigmoid_derivative)


def _atan_derivative(z: Array, alpha: float) -> Array:
    return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * z) ** 2)


def atan(alpha: float = 2.0) -> Surrogate:
    """Arctangent surrogate (SpikingJelly's ``ATan`` convention).

    dH/dz ≈ (α/2) / (1 + (π/2·α·z)²): the derivative of arctan(π/2·α·z)/π + 1/2; peak α/2, integral 1.
    """
    _check_positive("alpha", alpha, "atan")
    return Surrogate("atan", float(alpha), _atan_derivative)


def _rectangle_derivative(z: Array, width: float) -> Array:
    return (jnp.abs(z) < width / 2.0).astype(z.dtype) / width


def rectangle(width: float = 1.0) -> Surrogate:
    """Rectangular (boxcar) surrogate, STBP's convention.

    dH/dz ≈ (1/w)·1[|z| < w/2]: height 1/w, width w, integral 1.
    """
    _check_positive("width", width, "rectangle")
    return Surrogate("rectangle", float(width), _rectangle_derivative)


def _triangle_derivative(z: Array, width: float) -> Array:
    return jnp.maximum(0.0, 1.0 - jnp.abs(z) / width) / width


def triangle(width: float = 1.0) -> Surrogate:
    """Triangular surrogate.

    dH/dz ≈ max(0, 1 − |z|/w)/w: peak 1/w at z = 0, support (−w, w), integral 1.
    """
    _check_positive("width", width, "triangle")
    return Surrogate("triangle", float(width), _triangle_derivative)


SURROGATES: dict[str, Callable[..., Surrogate]] = {
    "sigmoid": sigmoid,
    "atan": atan,
    "rectangle": rectangle,
    "triangle": triangle,
}


def get(name: str, **kwargs: float) -> Surrogate:
    """Build a surrogate by family name, e.g. ``get("atan", alpha=2.0)``."""
    if name not in SURROGATES:
        raise ValueError(f"Unknown surrogate {name!r}; valid: {sorted(SURROGATES)}.")
    return SURROGATES[name](**kwargs)
