"""OTTT_O (docs/methods.md §3): OTTT gradients with an optimizer update after *every* time step.

T updates per minibatch; step t + 1's forward uses the parameters updated at step t.
"""

from __future__ import annotations

import functools

from safjax.methods import base, online, ottt

NAME = "ottt_o"

train_step = online.make_train_step(ottt.make_step_loss, ottt.init_state, NAME, update_every_step=True)
step_gradients = online.make_step_gradients(ottt.make_step_loss, ottt.init_state, NAME)


def ottt_o(convention: str = "safjax") -> base.Method:
    """OTTT with an optimizer update after every time step (docs/methods.md §3.3).

    Args:
      convention: 'safjax' (the trace form for every parameter, for which ∇SAF-E = ∇OTTT_O holds)
        or 'authors' (the OTTT authors' code: the raw input x[t] in the first layer's weight
        gradient, δ for biases; docs/methods.md §3.4).
    """
    ottt.check_convention(convention, NAME)
    step = train_step if convention == "safjax" else online.make_train_step(
        ottt.step_loss_maker(convention), ottt.init_state, NAME, update_every_step=True)
    return base.Method(
        NAME, "OTTT, update every step (docs/methods.md §3)", step, base.every_step,
        forward=ottt.forward, step_forward=ottt.step_forward,
        validate=functools.partial(ottt.validate, method=NAME), settings=(("convention", convention),),
    )
