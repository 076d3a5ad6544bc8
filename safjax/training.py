"""One jitted training step for any registered method."""

from __future__ import annotations

from typing import Callable

import jax
import optax

from safjax import config as config_lib
from safjax import network as network_lib
from safjax import methods


def make_train_step(
    method: str,
    net: network_lib.Network,
    optimizer: optax.GradientTransformation,
    config: config_lib.TrainConfig = config_lib.TrainConfig(),
) -> Callable:
    """``step(params, opt_state, inputs [T, B, ...], labels [B]) -> (params, opt_state, StepOutput)``.

    Compiled once per input shape; switching methods is changing the ``method`` string.
    """
    train_step = methods.get_method(method).train_step

    @jax.jit
    def step(params, opt_state, inputs, labels):
        return train_step(
            net, params, opt_state, inputs, labels, optimizer=optimizer, config=config
        )

    return step
