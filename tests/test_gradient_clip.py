"""Gradient clipping: the optimizer stage, and each method's default (-1 = the method's)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from safjax import optimizers
from safjax.experiment_config import ExperimentConfig


def test_clipping_rescales_to_the_global_norm_before_the_update():
    optimizer = optimizers.make_optimizer("sgd", 0.1, 0.0, "constant", 1, 1, grad_clip=0.5)
    params = {"a": jnp.zeros(3), "b": jnp.zeros(4)}
    grads = {"a": jnp.full(3, 3.0), "b": jnp.full(4, 4.0)}  # global norm √(27 + 64) ≈ 9.54
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    norm = np.sqrt(sum(float(jnp.sum(u ** 2)) for u in updates.values()))
    np.testing.assert_allclose(norm, 0.1 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(updates["a"] / updates["b"][:3], 3.0 / 4.0, rtol=1e-6)  # direction kept
    small = {"a": jnp.full(3, 0.01), "b": jnp.zeros(4)}
    updates, _ = optimizer.update(small, optimizer.init(params), params)
    np.testing.assert_allclose(updates["a"], -0.1 * 0.01, rtol=1e-6)  # below the norm: untouched


def test_spike_representation_methods_clip_by_default_and_the_others_do_not():
    assert ExperimentConfig(method="saf_f").gradient_clip == 0.3
    assert ExperimentConfig(method="spike_rep").gradient_clip == 0.3
    for method in ("bptt", "tbptt", "ottt_a", "ottt_o", "saf_e"):
        assert ExperimentConfig(method=method).gradient_clip == 0.0
    assert ExperimentConfig(method="saf_f", grad_clip=0).gradient_clip == 0.0  # explicitly off
    assert ExperimentConfig(method="saf_e", grad_clip=2.0).gradient_clip == 2.0


@pytest.mark.parametrize("value", [-2.0, float("nan"), float("inf")])
def test_bad_grad_clip_is_one_line(value):
    with pytest.raises(ValueError, match=r"--grad_clip=.* expected -1 \(the method's default\), 0 \(off\)"):
        ExperimentConfig(grad_clip=value).validate()
    with pytest.raises(ValueError, match="`grad_clip` must be ≥ 0"):
        optimizers.make_optimizer("sgd", 0.1, 0.0, "constant", 1, 1, grad_clip=-1.0)
