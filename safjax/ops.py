"""Synaptic operators: the pure, stateless maps between neuron layers (docs/methods.md §1, §4).

An operator is a frozen dataclass (hashable, so a network is a `jit` static argument) with

    init(key, in_shape, dtype) -> params          in_shape: one example's shape, e.g. (H, W, C)
    out_shape(in_shape) -> shape
    apply(params, x, bias_scale) -> y             x: [B, *in_shape] → y: [B, *out_shape]

Operators with a bias add ``bias_scale · b``: 1 when the input is a spike, c_t = Σ_{k<t} λ^k when
it is a spike accumulation (SAF) or a trace (OTTT's gradient path). ``linear`` marks operators
that are linear and time-invariant in x (up to the bias) — the ones SAF's accumulation identity
allows; ``synaptic`` marks the weighted ones whose evaluations are counted as synaptic operations.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from safjax import conv as conv_lib

Array = jax.Array
Params = dict[str, Array]
Shape = tuple[int, ...]

WS_EPSILON = 1e-4  # scaled weight standardisation: Ŵ = g (W − mean) / sqrt(var · fan_in + ε)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _positive_int(name: str, value: Any, op: str) -> None:
    _require(
        isinstance(value, int) and value >= 1, f"{op}: `{name}` must be an int ≥ 1, got {value!r}."
    )


COMPUTE_DTYPES = (None, "bfloat16", "float16", "float32")


def _check_compute_dtype(value, op: str) -> None:
    _require(value in COMPUTE_DTYPES, f"{op}: `compute_dtype` must be one of {COMPUTE_DTYPES}, got {value!r}.")


def _check_rank(op: str, in_shape: Shape, rank: int, layout: str) -> None:
    _require(
        len(in_shape) == rank,
        f"{op} expects per-example input of shape {layout}, got {tuple(in_shape)}; "
        "insert a Flatten before dense layers or check the input_shape.",
    )


@dataclasses.dataclass(frozen=True)
class Dense:
    """y = x W + bias_scale · b, x [B, F_in] → [B, features]."""

    features: int
    use_bias: bool = True
    compute_dtype: str | None = None
    linear = True
    synaptic = True

    def __post_init__(self):
        _positive_int("features", self.features, "Dense")
        _check_compute_dtype(self.compute_dtype, "Dense")

    def out_shape(self, in_shape: Shape) -> Shape:
        _check_rank("Dense", in_shape, 1, "(F_in,)")
        return (self.features,)

    def init(self, key: Array, in_shape: Shape, dtype=jnp.float32) -> Params:
        self.out_shape(in_shape)
        kernel = jax.nn.initializers.lecun_normal()(key, (in_shape[0], self.features), dtype)
        params = {"kernel": kernel}
        if self.use_bias:
            params["bias"] = jnp.zeros((self.features,), dtype)
        return params

    def weight(self, params: Params) -> Array:
        return params["kernel"]

    def apply(self, params: Params, x: Array, bias_scale: Array | float = 1.0) -> Array:
        kernel = self.weight(params)
        if self.compute_dtype is None:
            y = x @ kernel
        else:  # e.g. bf16 operands, accumulated and returned in the parameters' dtype
            out = jnp.result_type(x, kernel)
            y = jnp.matmul(x.astype(self.compute_dtype), kernel.astype(self.compute_dtype), preferred_element_type=out)
        return y + bias_scale * params["bias"] if self.use_bias else y


def _standardise(kernel: Array, gain: Array) -> Array:
    """Scaled WS per output channel (last axis): g (W − mean) / sqrt(var · fan_in + ε)."""
    axes = tuple(range(kernel.ndim - 1))
    fan_in = math.prod(kernel.shape[:-1])
    mean = jnp.mean(kernel, axis=axes, keepdims=True)
    var = jnp.var(kernel, axis=axes, keepdims=True)
    return gain * (kernel - mean) / jnp.sqrt(var * fan_in + WS_EPSILON)


class _ScaledWS:
    """Mixin: the weight is standardised (`_standardise`) with a learnable gain, init 1."""

    def init(self, key: Array, in_shape: Shape, dtype=jnp.float32) -> Params:
        params = super().init(key, in_shape, dtype)
        params["gain"] = jnp.ones((self.features,), dtype)
        return params

    def weight(self, params: Params) -> Array:
        return _standardise(params["kernel"], params["gain"])


@dataclasses.dataclass(frozen=True)
class ScaledWSDense(_ScaledWS, Dense):
    """Dense with scaled weight standardisation and a learnable per-output gain (init 1)."""


@dataclasses.dataclass(frozen=True)
class Conv:
    """2-D convolution, x [B, H, W, C_in] → [B, H', W', features], kernel [k, k, C_in, features].

    ``swapped_weight_grad`` selects the weight gradient that stays on XLA:CPU's fast path inside
    a `lax.scan` (see `safjax.conv`); ``None`` means: on when the default backend is the CPU.
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: str = "SAME"
    use_bias: bool = True
    swapped_weight_grad: bool | None = None
    compute_dtype: str | None = None
    linear = True
    synaptic = True

    def __post_init__(self):
        for name in ("features", "kernel_size", "stride"):
            _positive_int(name, getattr(self, name), type(self).__name__)
        _require(
            self.padding in ("SAME", "VALID"),
            f"Conv: `padding` must be 'SAME' or 'VALID', got {self.padding!r}.",
        )

    def out_shape(self, in_shape: Shape) -> Shape:
        _check_rank(type(self).__name__, in_shape, 3, "(H, W, C_in)")
        h, w, _ = in_shape
        k, st = self.kernel_size, self.stride
        if self.padding == "SAME":
            return (-(-h // st), -(-w // st), self.features)
        _require(h >= k and w >= k, f"Conv: input {in_shape} is smaller than the kernel {k}.")
        return ((h - k) // st + 1, (w - k) // st + 1, self.features)

    def init(self, key: Array, in_shape: Shape, dtype=jnp.float32) -> Params:
        self.out_shape(in_shape)
        k = self.kernel_size
        shape = (k, k, in_shape[-1], self.features)
        params = {"kernel": jax.nn.initializers.lecun_normal()(key, shape, dtype)}
        if self.use_bias:
            params["bias"] = jnp.zeros((self.features,), dtype)
        return params

    def weight(self, params: Params) -> Array:
        return params["kernel"]

    def apply(self, params: Params, x: Array, bias_scale: Array | float = 1.0) -> Array:
        swapped = self.swapped_weight_grad
        if swapped is None:
            swapped = jax.default_backend() == "cpu"
        y = conv_lib.conv2d(x, self.weight(params), self.stride, self.padding, swapped, self.compute_dtype)
        return y + bias_scale * params["bias"] if self.use_bias else y


@dataclasses.dataclass(frozen=True)
class ScaledWSConv(_ScaledWS, Conv):
    """Conv with scaled weight standardisation (docs/methods.md §8) and a learnable per-channel gain."""


class _ParameterFree:
    """Mixin for operators without parameters."""

    synaptic = False

    def init(self, key: Array, in_shape: Shape, dtype=jnp.float32) -> Params:
        self.out_shape(in_shape)
        return {}


def _pool_shape(op: str, in_shape: Shape, window: int) -> Shape:
    _check_rank(op, in_shape, 3, "(H, W, C)")
    h, w, c = in_shape
    _require(h >= window and w >= window, f"{op}: input {in_shape} smaller than window {window}.")
    return (h // window, w // window, c)


@dataclasses.dataclass(frozen=True)
class _Pool(_ParameterFree):
    """Square window, stride = window: [B, H, W, C] → [B, H/w, W/w, C]."""

    window: int = 2

    def __post_init__(self):
        _positive_int("window", self.window, type(self).__name__)

    def out_shape(self, in_shape: Shape) -> Shape:
        return _pool_shape(type(self).__name__, in_shape, self.window)

    def _reduce(self, x: Array, init, reducer) -> Array:
        w = self.window
        return jax.lax.reduce_window(x, init, reducer, (1, w, w, 1), (1, w, w, 1), "VALID")


@dataclasses.dataclass(frozen=True)
class AvgPool(_Pool):
    """Average pooling."""

    linear = True

    def apply(self, params: Params, x: Array, bias_scale: Array | float = 1.0) -> Array:
        return self._reduce(x, 0.0, jax.lax.add) / (self.window * self.window)


@dataclasses.dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling. Not linear: SAF, OTTT and SR refuse networks containing it."""

    linear = False

    def apply(self, params: Params, x: Array, bias_scale: Array | float = 1.0) -> Array:
        return self._reduce(x, -jnp.inf, jax.lax.max)


@dataclasses.dataclass(frozen=True)
class GlobalAvgPool(_ParameterFree):
    """Mean over the spatial axes, [B, H, W, C] → [B, C]."""

    linear = True

    def out_shape(self, in_shape: Shape) -> Shape:
        _check_rank("GlobalAvgPool", in_shape, 3, "(H, W, C)")
        return (in_shape[-1],)

    def apply(self, params: Params, x: Array, bias_scale: Array | float = 1.0) -> Array:
        return jnp.mean(x, axis=(1, 2))


@dataclasses.dataclass(frozen=True)
class Flatten(_ParameterFree):
    """[B, ...] → [B, prod(...)]."""

    linear = True

    def out_shape(self, in_shape: Shape) -> Shape:
        return (math.prod(in_shape),)

    def apply(self, params: Params, x: Array, bias_scale: Array | float = 1.0) -> Array:
        return x.reshape(x.shape[0], -1)


@dataclasses.dataclass(frozen=True)
class Scale(_ParameterFree):
    """Multiply by a fixed factor (the ×2.74 after each LIF in the reference VGG)."""

    factor: float = 1.0
    linear = True

    def out_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def apply(self, params: Params, x: Array, bias_scale: Array | float = 1.0) -> Array:
        return x * self.factor


@dataclasses.dataclass(frozen=True)
class Upsample(_ParameterFree):
    """Nearest-neighbour upsampling by an integer factor, [B, H, W, C] → [B, fH, fW, C]."""

    factor: int = 2
    linear = True

    def __post_init__(self):
        _positive_int("factor", self.factor, "Upsample")

    def out_shape(self, in_shape: Shape) -> Shape:
        _check_rank("Upsample", in_shape, 3, "(H, W, C)")
        h, w, c = in_shape
        return (h * self.factor, w * self.factor, c)

    def apply(self, params: Params, x: Array, bias_scale: Array | float = 1.0) -> Array:
        f = self.factor
        return jnp.repeat(jnp.repeat(x, f, axis=1), f, axis=2)
