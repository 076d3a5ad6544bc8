"""Test-wide settings: float64, so that exact identities are checked to ~1e-12."""

import jax

jax.config.update("jax_enable_x64", True)
