"""One jitted training step for any registered method."""

from __future__ import annotations

import functools
from typing import Callable

import jax
import optax

from safjax import config as config_lib
from safjax import network as network_lib
from safjax import methods


@functools.cache  # net and config are frozen dataclasses: one eval_shape per (method, net, config)
def expected_params(method: str, net: network_lib.Network,
                    config: config_lib.TrainConfig = config_lib.TrainConfig()):
    """Shapes (``jax.ShapeDtypeStruct``) of the params ``method`` trains on ``net``: the network's,
    plus whatever the method adds (TL-BPTT's auxiliary heads). Nothing is computed."""
    method_ = methods.get_method(method)

    def init(key):
        return method_.init_params(net, network_lib.init_params(net, key), config, key)

    return jax.eval_shape(init, jax.random.key(0))


def make_train_step(
    method: str,
    net: network_lib.Network,
    optimizer: optax.GradientTransformation,
    config: config_lib.TrainConfig = config_lib.TrainConfig(),
) -> Callable:
    """``step(params, opt_state, inputs [T, B, ...], labels [B]) -> (params, opt_state, StepOutput)``.

    Compiled once per input shape; switching methods is changing the ``method`` string. What the
    method cannot train (e.g. ``MaxPool`` under SAF / OTTT / SR) is refused here, when the step is
    made; every call checks, before the compiled code runs, that the params match the network,
    that the inputs are time-major and that the labels are class indices in [0, num_classes).
    """
    method_ = methods.get_method(method)
    method_.validate(net)
    train_step = method_.train_step

    @jax.jit
    def jitted(params, opt_state, inputs, labels):
        return train_step(
            net, params, opt_state, inputs, labels, optimizer=optimizer, config=config
        )

    def step(params, opt_state, inputs, labels):
        network_lib.check_params(expected_params(method, net, config), params)
        network_lib.check_inputs(net, inputs, labels)
        return jitted(params, opt_state, inputs, labels)

    step.jitted = jitted
    step._cache_size = jitted._cache_size
    return step
