"""Synaptic operators: shapes, the scaled-WS formula, and the CPU-fast conv weight gradient."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from safjax import conv, ops
from budget import first_fast

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("batch,size,c_in,c_out,kernel", first_fast([(3, 8, 2, 4, 3), (1, 5, 3, 2, 5), (4, 6, 1, 3, 1)]))
def test_swapped_weight_gradient_equals_plain_convolution(batch, size, c_in, c_out, kernel):
    kx, kw, kg = jax.random.split(KEY, 3)
    x = jax.random.normal(kx, (batch, size, size, c_in), jnp.float64)
    w = jax.random.normal(kw, (kernel, kernel, c_in, c_out), jnp.float64)
    g = jax.random.normal(kg, (batch, size, size, c_out), jnp.float64)
    y_plain, vjp_plain = jax.vjp(lambda x, w: conv.conv2d(x, w, swapped_weight_grad=False), x, w)
    y_fast, vjp_fast = jax.vjp(lambda x, w: conv.conv2d(x, w, swapped_weight_grad=True), x, w)
    np.testing.assert_allclose(y_fast, y_plain, atol=1e-12)
    chex.assert_trees_all_close(vjp_fast(g), vjp_plain(g), atol=1e-10)


def test_swapped_gradient_inside_scan_matches():
    x = jax.random.normal(KEY, (3, 2, 6, 6, 2), jnp.float64)
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 2, 3), jnp.float64)

    def loss(w, swapped):
        def body(carry, x_t):
            return carry + jnp.sum(jnp.tanh(conv.conv2d(x_t, w, swapped_weight_grad=swapped))), None
        return jax.lax.scan(body, 0.0, x)[0]

    np.testing.assert_allclose(jax.grad(loss)(w, True), jax.grad(loss)(w, False), atol=1e-10)


def test_swapped_path_only_where_it_applies():
    assert conv.supports_swapped_weight_grad(3, 1, "SAME")
    assert not conv.supports_swapped_weight_grad(3, 2, "SAME")
    assert not conv.supports_swapped_weight_grad(2, 1, "SAME")
    assert not conv.supports_swapped_weight_grad(3, 1, "VALID")


def test_scaled_weight_standardisation_formula():
    op = ops.ScaledWSConv(5, 3)
    params = op.init(KEY, (4, 4, 2), jnp.float64)
    params["gain"] = jnp.arange(1.0, 6.0, dtype=jnp.float64)
    w = np.asarray(params["kernel"]).reshape(-1, 5)
    expected = (w - w.mean(0)) / np.sqrt(w.var(0) * w.shape[0] + 1e-4) * np.arange(1.0, 6.0)
    np.testing.assert_allclose(np.asarray(op.weight(params)).reshape(-1, 5), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "op,in_shape,out_shape",
    [
        (ops.Dense(7), (5,), (7,)),
        (ops.ScaledWSDense(7), (5,), (7,)),
        (ops.Conv(4, 3), (8, 8, 2), (8, 8, 4)),
        (ops.Conv(4, 3, stride=2), (8, 8, 2), (4, 4, 4)),
        (ops.Conv(4, 3, padding="VALID"), (8, 8, 2), (6, 6, 4)),
        (ops.AvgPool(2), (8, 8, 3), (4, 4, 3)),
        (ops.MaxPool(2), (8, 8, 3), (4, 4, 3)),
        (ops.GlobalAvgPool(), (8, 8, 3), (3,)),
        (ops.Flatten(), (4, 4, 3), (48,)),
        (ops.Scale(2.74), (4, 3), (4, 3)),
        (ops.Upsample(2), (2, 2, 3), (4, 4, 3)),
    ],
)
def test_declared_shape_matches_applied_shape(op, in_shape, out_shape):
    params = op.init(KEY, in_shape, jnp.float32)
    y = op.apply(params, jnp.ones((2,) + in_shape, jnp.float32), 1.0)
    assert op.out_shape(in_shape) == out_shape
    chex.assert_shape(y, (2,) + out_shape)


@pytest.mark.parametrize("op", [ops.Dense(3), ops.Conv(3, 3), ops.AvgPool(2), ops.GlobalAvgPool(),
                                ops.Scale(0.5), ops.Upsample(2)])
def test_linear_operators_are_affine_with_bias_scaled(op):
    in_shape = (5,) if isinstance(op, ops.Dense) else (4, 4, 2)
    params = op.init(KEY, in_shape, jnp.float64)
    params = jax.tree_util.tree_map(lambda p: p + 0.3, params)
    a, b = jax.random.normal(KEY, (2, 2) + in_shape, jnp.float64)
    lhs = op.apply(params, 2.0 * a + 3.0 * b, 5.0)
    rhs = 2.0 * op.apply(params, a, 1.0) + 3.0 * op.apply(params, b, 1.0)  # bias 1·(2 + 3) = 5
    assert op.linear
    np.testing.assert_allclose(lhs, rhs, atol=1e-10)


def test_maxpool_is_declared_nonlinear():
    assert not ops.MaxPool(2).linear


@pytest.mark.parametrize("make,match", [
    (lambda: ops.Dense(0), "`features`"),
    (lambda: ops.Conv(4, kernel_size=0), "`kernel_size`"),
    (lambda: ops.Conv(4, padding="FULL"), "`padding`"),
    (lambda: ops.AvgPool(0), "`window`"),
    (lambda: ops.Dense(3).out_shape((4, 4)), "Flatten"),
    (lambda: ops.Conv(3).out_shape((16,)), r"\(H, W, C_in\)"),
])
def test_bad_operator_arguments_raise_clearly(make, match):
    with pytest.raises(ValueError, match=match):
        make()
