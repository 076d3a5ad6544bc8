"""Test-wide settings: float64, so that exact identities are checked to ~1e-12, and four forced
CPU devices for the data-parallel tests (set before JAX initialises its backends)."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
