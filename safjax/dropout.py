"""Neuron dropout with one mask per minibatch, held over the T steps (docs/methods.md §1.7).

`Dropout(rate)` is an operator placed on a path after a spiking layer (``nn.Dropout`` in a
`Sequential`): it multiplies the spikes it reads by a mask m ∈ {0, 1/(1 − rate)}, drawn per
example and neuron. The mask is a function of the minibatch's key alone, so every time step —
and every evaluation of the operator within the step (OTTT's value and trace paths, SAF's
accumulations, SR's rates) — multiplies by the same m: a linear operator fixed over T, which
keeps SAF's accumulation identity and OTTT's trace form exact (docs/methods.md §5.9).

The network is static; the key is not. `bind(net, key)` returns, inside a traced training step,
a copy of the network whose Dropout operators carry that minibatch's key (the step builders in
`safjax.step_builder` and `safjax.parallel` call it); an unbound Dropout — evaluation, inference,
cost counting — is the identity.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax
import jax.numpy as jnp

from safjax import network as network_lib
from safjax import ops

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Dropout(ops._ParameterFree):
    """x [B, ...] → m ⊙ x with m ~ Bernoulli(1 − rate)/(1 − rate), per element, from the bound key;
    the identity when unbound (``key=None``) or ``rate = 0``."""

    rate: float = 0.1
    key: Any = dataclasses.field(default=None, compare=False, hash=False, repr=False)
    salt: int = dataclasses.field(default=0, compare=False, hash=False, repr=False)
    linear = True  # a fixed mask is linear and time-invariant within a minibatch

    def __post_init__(self):
        if not (isinstance(self.rate, (int, float)) and 0.0 <= self.rate < 1.0):
            raise ValueError(f"Dropout: `rate` must lie in [0, 1), got {self.rate!r}.")

    def out_shape(self, in_shape):
        return tuple(in_shape)

    def mask(self, shape: tuple[int, ...], dtype) -> Array:
        """The mask m [shape] of the bound key (the same on every call)."""
        keep = jax.random.bernoulli(jax.random.fold_in(self.key, self.salt), 1.0 - self.rate, shape)
        return keep.astype(dtype) / (1.0 - self.rate)

    def apply(self, params, x: Array, bias_scale=1.0) -> Array:
        del params, bias_scale
        if self.key is None or self.rate == 0:
            return x
        return x * self.mask(x.shape, x.dtype)


def has_dropout(net: network_lib.Network) -> bool:
    """Whether ``net`` holds a Dropout with rate > 0 (its training steps then need a key)."""
    return any(isinstance(op, Dropout) and op.rate > 0 for op in net.all_ops())


def bind(net: network_lib.Network, key: Array) -> network_lib.Network:
    """``net`` with every Dropout carrying ``key`` (each its own stream); ``net`` itself when it
    has none. Call inside the traced step; the result must not be cached or hashed."""
    if not has_dropout(net):
        return net
    salts = itertools.count()

    def with_key(op):
        return dataclasses.replace(op, key=key, salt=next(salts)) if isinstance(op, Dropout) else op

    return network_lib.map_operators(net, with_key)
