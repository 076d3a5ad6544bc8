"""The jitted training step of any method: `make_train_step` (single device; `safjax.parallel`
has the data-parallel one), and the checks both run before the compiled code.

The checks and the minibatch binding take a `safjax.Network` or a Flax model's shaped step model
(`safjax.engine.flax_model.FlaxModel`, whose params are ``nnx.to_pure_dict(params_state)``)."""

from __future__ import annotations

import functools
import warnings
from typing import Callable

import jax
import optax
from flax import nnx

from safjax import train_config as config_lib
from safjax import dropout, engine, methods
from safjax import network as network_lib
from safjax.engine import flax_model


def as_method(method: str | methods.Method) -> methods.Method:
    """A `Method` from itself or from a registered name (built with its default settings)."""
    return methods.get_method(method) if isinstance(method, str) else method


def init_network_params(net, key):
    """The network's own params: ``safjax.network.init_params(net, key)`` for a `Network`; for a
    Flax step model, its module's ``nnx.Param`` values as plain nested dicts (``key`` unused)."""
    if isinstance(net, flax_model.FlaxModel):
        return nnx.to_pure_dict(net.params_state)
    return network_lib.init_params(net, key)


@functools.cache  # the method and a FlaxModel are hashed by identity, a Network is a frozen dataclass
def expected_params(method: methods.Method, net):
    """Shapes (``jax.ShapeDtypeStruct``) of the params ``method`` trains on ``net``: the network's,
    plus whatever the method adds (TL-BPTT's auxiliary heads). Nothing is computed."""

    def init(key):
        return method.init_params(net, init_network_params(net, key), key)

    return jax.eval_shape(init, jax.random.key(0))


@functools.cache
def _network_param_shapes(net):
    return jax.eval_shape(lambda key: init_network_params(net, key), jax.random.key(0))


@functools.cache  # an optax optimizer is a NamedTuple of functions: hashed by their identity
def expected_opt_state(method: methods.Method, net, optimizer):
    """Shapes of ``optimizer.init(params)`` for the params ``method`` trains on ``net``."""
    return jax.eval_shape(optimizer.init, expected_params(method, net))


def check_state(method: methods.Method, net, optimizer, params, opt_state) -> None:
    """Refuse, in one line, params or an optimizer state that do not belong to this method,
    network and optimizer (they would fail later as a KeyError or a broadcast, or train wrongly)."""
    expected = expected_params(method, net)
    try:
        network_lib.check_params(expected, params)
    except ValueError:
        if _matches(_network_param_shapes(net), params):  # the network's own params, heads missing
            raise ValueError(
                f"{method!r} trains more than the network's params (e.g. TL-BPTT's auxiliary heads): pass "
                "params = method.init_params(net, model.params(), key); after training, "
                "method.network_params(params) gives the network's params back (e.g. for model.load_params)."
            ) from None
        raise
    network_lib.check_tree(
        expected_opt_state(method, net, optimizer), opt_state,
        "`opt_state` does not match optimizer.init(params) of this optimizer and network",
        "an opt_state of another optimizer or model? make it with optimizer.init(params)")


def _matches(expected, tree) -> bool:
    try:
        network_lib.check_params(expected, tree)
    except ValueError:
        return False
    return True


MIN_CHANNELS = 4  # a spiking layer narrower than this is almost surely a mistake (see check_layer_widths)


def check_model(method: methods.Method, net) -> None:
    """What is checked when a step is made: the method's `validate` (refuses, in one line, what it
    cannot train), narrow spiking layers (warned)."""
    method.validate(net)
    check_layer_widths(net)


def check_layer_widths(net) -> None:
    """Warn (one line) about spiking layers (cells) with fewer than `MIN_CHANNELS` channels
    (features), e.g. from a tiny ``--width`` rounded up to 1 (the operators refuse 0 themselves)."""
    model = engine.as_step_model(net)
    narrow = [(name, shape[-1]) for name, shape in zip(model.cell_names, model.cell_shapes)
              if shape and shape[-1] < MIN_CHANNELS]
    if narrow:
        listed = ", ".join(f"{name}: {channels}" for name, channels in narrow)
        warnings.warn(
            f"spiking layers with fewer than {MIN_CHANNELS} channels ({listed}) carry almost no "
            "information: training will likely stay near chance; widen them (experiments.train: a larger "
            "--width, which scales every layer's channels, rounded and at least 1).", stacklevel=3)


def _has_random_streams(net) -> bool:
    if isinstance(net, flax_model.FlaxModel):
        return net.has_random_streams()
    return dropout.has_dropout(net)


def needs_key(method: methods.Method, net) -> bool:
    """Whether a minibatch of ``method`` on ``net`` draws random numbers (the step then needs a key):
    the method's own (SLTT-K's steps) or the network's (dropout masks, a Flax model's rng streams)."""
    return method.needs_key or _has_random_streams(net)


def bind_minibatch(net, key, shard=None):
    """Inside a traced step: (``net`` with its dropout masks drawn from ``key``, the method's key).

    ``shard`` (the device's index under data parallelism) gives each device's examples their own
    masks, while the method's key — e.g. SLTT-K's choice of steps — stays one per global minibatch."""
    dropout_key, method_key = jax.random.split(key)
    if shard is not None:
        dropout_key = jax.random.fold_in(dropout_key, shard)
    if isinstance(net, flax_model.FlaxModel):
        return (net.bind(dropout_key) if net.has_random_streams() else net), method_key
    return dropout.bind(net, dropout_key), method_key


def check_key(method: methods.Method, net, key):
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
    step is made (and a spiking layer narrower than `MIN_CHANNELS` warned about); every call
    checks, before the compiled code runs, that the params match the network (and the method:
    TL-BPTT's heads), that ``opt_state`` is ``optimizer.init`` of such params, that the inputs are
    time-major, floating point and finite and that the labels are class indices in
    [0, num_classes). ``key`` is the minibatch's PRNG key, required where the method or the
    network draws random numbers.
    """
    method = as_method(method)
    net = getattr(net, "network", net)  # a safjax.nn.Sequential: its Network
    if isinstance(net, nnx.Module):  # any other Flax model: the engine's Flax front-end
        from safjax.engine import flax_training

        return flax_training.make_train_step(method, net, optimizer, config)
    check_model(method, net)
    train_step = method.train_step

    @jax.jit
    def jitted(params, opt_state, inputs, labels, key):
        bound, method_key = bind_minibatch(net, key)
        return train_step(bound, params, opt_state, inputs, labels, optimizer=optimizer, config=config,
                          key=method_key)

    def step(params, opt_state, inputs, labels, key=None):
        check_state(method, net, optimizer, params, opt_state)
        network_lib.check_inputs(net, inputs, labels)
        return jitted(params, opt_state, inputs, labels, check_key(method, net, key))

    step.jitted = jitted
    step._cache_size = jitted._cache_size
    return step
