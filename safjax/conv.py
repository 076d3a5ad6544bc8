"""2-D convolution (NHWC, HWIO) with an optional fast weight gradient for XLA:CPU.

On XLA:CPU a convolution's weight gradient inside a `lax.scan` body is left in a non-canonical
layout and misses the fast path (JAX issue #12868), ~50× slower. The weight gradient of a stride-1
'SAME' convolution with an odd kernel is itself an ordinary NHWC forward convolution once the
batch and channel axes are swapped:

    dW[i, j, ci, co] = Σ_{b,h,w} x_pad[b, h+i, w+j, ci] · g[b, h, w, co]
                     = conv(x as [C_in, H, W, B], g as kernel [H, W, B, C_out], padding k//2)

`swapped_weight_grad=True` computes it that way (a `jax.custom_vjp`); the input gradient is the
'SAME' convolution of the cotangent with the flipped kernel. Values and gradients equal the plain
convolution's (tested).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array
_DIMS = ("NHWC", "HWIO", "NHWC")


def _plain_conv(x: Array, kernel: Array, stride: int, padding: str) -> Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), padding, dimension_numbers=_DIMS
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=())
def _swapped_grad_conv(x: Array, kernel: Array) -> Array:
    return _plain_conv(x, kernel, 1, "SAME")


def _swapped_fwd(x: Array, kernel: Array):
    return _plain_conv(x, kernel, 1, "SAME"), (x, kernel)


def _swapped_bwd(residuals, g: Array):
    x, kernel = residuals
    # Input gradient: the 'SAME' convolution of g with the spatially flipped kernel, in and out
    # channels exchanged (exact for stride 1 and odd kernels).
    dx = _plain_conv(g, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2), 1, "SAME")
    kh, kw = kernel.shape[0], kernel.shape[1]
    x_swapped = jnp.transpose(x, (3, 1, 2, 0))  # [C_in, H, W, B]
    g_as_kernel = jnp.transpose(g, (1, 2, 0, 3))  # [H, W, B, C_out]
    dw = jax.lax.conv_general_dilated(
        x_swapped,
        g_as_kernel,
        (1, 1),
        ((kh // 2, kh // 2), (kw // 2, kw // 2)),
        dimension_numbers=_DIMS,
    )  # [C_in, kh, kw, C_out]
    return dx, jnp.transpose(dw, (1, 2, 0, 3)).astype(kernel.dtype)


_swapped_grad_conv.defvjp(_swapped_fwd, _swapped_bwd)


def supports_swapped_weight_grad(kernel_size: int, stride: int, padding: str) -> bool:
    """Whether the swapped-axes weight gradient applies (stride 1, 'SAME', odd kernel)."""
    return stride == 1 and padding == "SAME" and kernel_size % 2 == 1


def conv2d(
    x: Array, kernel: Array, stride: int = 1, padding: str = "SAME", swapped_weight_grad: bool = False,
    compute_dtype: str | None = None,
) -> Array:
    """Convolve ``x`` [B, H, W, C_in] with ``kernel`` [k, k, C_in, C_out] → [B, H', W', C_out].

    Mixed dtypes promote as in a matmul (float32 spikes with float64 weights compute in float64).
    ``compute_dtype`` (e.g. ``"bfloat16"``) casts both operands and accumulates into the promoted
    dtype (mixed precision; the plain convolution, whose gradient JAX derives).
    """
    dtype = jnp.result_type(x, kernel)
    if compute_dtype is not None:
        return jax.lax.conv_general_dilated(
            x.astype(compute_dtype), kernel.astype(compute_dtype), (stride, stride), padding,
            dimension_numbers=_DIMS, preferred_element_type=dtype)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    if swapped_weight_grad and supports_swapped_weight_grad(kernel.shape[0], stride, padding):
        return _swapped_grad_conv(x, kernel)
    return _plain_conv(x, kernel, stride, padding)


def flax_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                              dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """`jax.lax.conv_general_dilated` for `flax.nnx.Conv` (its ``conv_general_dilated`` attribute) with
    the swapped-axes weight gradient where it applies: a 2-D NHWC/HWIO convolution, stride 1, 'SAME',
    odd square kernel, no dilation or groups, default precision. Anything else is the plain call."""
    plain = functools.partial(jax.lax.conv_general_dilated, lhs, rhs, window_strides, padding, lhs_dilation,
                              rhs_dilation, dimension_numbers, feature_group_count, precision=precision, **kwargs)
    nhwc = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DIMS)
    applies = (
        lhs.ndim == 4 and tuple(window_strides) == (1, 1) and padding == "SAME" and feature_group_count == 1
        and all(d in (None, 1, (1, 1)) for d in (lhs_dilation, rhs_dilation))
        and tuple(rhs_dilation or (1, 1)) == (1, 1) and tuple(lhs_dilation or (1, 1)) == (1, 1)
        and dimension_numbers == nhwc and precision is None and not kwargs.get("preferred_element_type")
        and rhs.shape[0] == rhs.shape[1] and supports_swapped_weight_grad(rhs.shape[0], 1, "SAME")
        and lhs.dtype == rhs.dtype)
    return _swapped_grad_conv(lhs, rhs) if applies else plain()
