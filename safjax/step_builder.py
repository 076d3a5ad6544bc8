"""The jitted training step of any method: `make_train_step` (single device; `safjax.parallel`
has the data-parallel one), and the checks both run before the compiled code."""

from __future__ import annotations

import functools
from typing import Callable

import jax
import optax

from safjax import train_config as config_lib
from safjax import dropout, methods
from safjax import network as network_lib


def as_method(method: str | methods.Method) -> methods.Method:
    """A `Method` from itself or from a registered name (built with its default settings)."""
    return methods.get_method(method) if isinstance(method, str) else method


@functools.cache  # the method is hashed by identity, the net is a frozen dataclass
def expected_params(method: methods.Method, net: network_lib.Network):
    """Shapes (``jax.ShapeDtypeStruct``) of the params ``method`` trains on ``net``: the network's,
    plus whatever the method adds (TL-BPTT's auxiliary heads). Nothing is computed."""

    def init(key):
        return method.init_params(net, network_lib.init_params(net, key), key)

    return jax.eval_shape(init, jax.random.key(0))


def needs_key(method: methods.Method, net: network_lib.Network) -> bool:
    """Whether a minibatch of ``method`` on ``net`` draws random numbers (the step then needs a key):
    the method's own (SLTT-K's steps) or the network's (dropout masks)."""
    return method.needs_key or dropout.has_dropout(net)


def bind_minibatch(net: network_lib.Network, key, shard=None) -> tuple[network_lib.Network, jax.Array]:
    """Inside a traced step: (``net`` with its dropout masks drawn from ``key``, the method's key).

    ``shard`` (the device's index under data parallelism) gives each device's examples their own
    masks, while the method's key — e.g. SLTT-K's choice of steps — stays one per global minibatch."""
    dropout_key, method_key = jax.random.split(key)
    if shard is not None:
        dropout_key = jax.random.fold_in(dropout_key, shard)
    return dropout.bind(net, dropout_key), method_key


def check_key(method: methods.Method, net: network_lib.Network, key):
    """The key to pass to the method: ``key``, or a fixed one where nothing is random; refuses a
    missing key where something is (reusing one key would repeat the same draw every minibatch)."""
    if key is not None:
        return key
    if needs_key(method, net):
        raise ValueError(
            f"{method.name} on this network draws random numbers every minibatch: pass a fresh "
            "`key` to each step, e.g. step(params, opt_state, inputs, labels, jax.random.fold_in(key, i)).")
    return jax.random.key(0)


def make_train_step(
    method: str | methods.Method,
    net: network_lib.Network,
    optimizer: optax.GradientTransformation,
    config: config_lib.TrainConfig = config_lib.TrainConfig(),
) -> Callable:
    """``step(params, opt_state, inputs [T, B, ...], labels [B], key=None) -> (params, opt_state,
    StepOutput)``.

    ``method`` is a `Method` (``safjax.methods.get_method("tbptt", truncation=4)``) or a registered
    name (default settings). Compiled once per input shape. What the method cannot train (e.g.
    ``MaxPool`` under SAF / OTTT / SR, an adaptive threshold under SAF) is refused here, when the
    step is made; every call checks, before the compiled code runs, that the params match the
    network, that the inputs are time-major and that the labels are class indices in
    [0, num_classes). ``key`` is the minibatch's PRNG key, required where the method or the
    network draws random numbers.
    """
    method = as_method(method)
    method.validate(net)
    train_step = method.train_step

    @jax.jit
    def jitted(params, opt_state, inputs, labels, key):
        bound, method_key = bind_minibatch(net, key)
        return train_step(bound, params, opt_state, inputs, labels, optimizer=optimizer, config=config,
                          key=method_key)

    def step(params, opt_state, inputs, labels, key=None):
        network_lib.check_params(expected_params(method, net), params)
        network_lib.check_inputs(net, inputs, labels)
        return jitted(params, opt_state, inputs, labels, check_key(method, net, key))

    step.jitted = jitted
    step._cache_size = jitted._cache_size
    return step
