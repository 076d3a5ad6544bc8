"""SAF-E (docs/methods.md §4): SAF forward, loss L[t] every step, an optimizer update after every step.

Per step its gradient equals OTTT's (Theorem 1) with one synaptic evaluation instead of two.
"""

from __future__ import annotations

import functools

from safjax import train_config as config_lib
from safjax import losses
from safjax import network as network_lib
from safjax.methods import base, online, saf

NAME = "saf_e"


def make_step_loss(
    net: network_lib.Network, config: config_lib.TrainConfig, num_steps: int, method: str = NAME
):
    """``step_loss(params, state, x_t, labels) -> (L[t], (state, o[t], rates[t]))``."""
    leak = saf.validate(net, method)

    def step_loss(params, state: saf.SAFState, x_t, labels):
        state, (output, _, spikes) = saf.saf_step(net, leak, params, state, x_t)
        loss = losses.ce_mse_loss(output, labels, config.mse_weight) / num_steps
        return loss, (state, output, base.mean_rates(spikes))

    return step_loss


train_step = online.make_train_step(make_step_loss, saf.init_state, NAME, update_every_step=True)
step_gradients = online.make_step_gradients(make_step_loss, saf.init_state, NAME)


def saf_e() -> base.Method:
    """SAF-E: an update after every step, OTTT_O's gradient at half its synaptic operations
    (docs/methods.md §4.3)."""
    return base.Method(
        NAME, "SAF, update every step (docs/methods.md §4)", train_step, base.every_step,
        forward=saf.forward, step_forward=saf.step_forward,
        validate=functools.partial(saf.validate, method=NAME),
    )
