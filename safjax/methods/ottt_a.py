"""OTTT_A (docs/methods.md §3): OTTT gradients summed over the T steps, one optimizer update per
minibatch."""

from __future__ import annotations

import functools

from safjax.methods import base, online, ottt

NAME = "ottt_a"

train_step = online.make_train_step(ottt.make_step_loss, ottt.init_state, NAME, update_every_step=False)


def ottt_a(convention: str = "safjax") -> base.Method:
    """OTTT with the T steps' gradients summed into one update per minibatch (docs/methods.md §3.3).

    Args:
      convention: 'safjax' (the trace form for every parameter, for which ∇SAF = ∇OTTT holds) or
        'authors' (the OTTT authors' code: the raw input x[t] in the first layer's weight gradient,
        δ for biases; docs/methods.md §3.4).
    """
    ottt.check_convention(convention, NAME)
    step = train_step if convention == "safjax" else online.make_train_step(
        ottt.step_loss_maker(convention), ottt.init_state, NAME, update_every_step=False)
    return base.Method(
        NAME, "OTTT, gradients summed over T (docs/methods.md §3)", step, base.one_update,
        forward=ottt.forward, step_forward=ottt.step_forward,
        validate=functools.partial(ottt.validate, method=NAME), settings=(("convention", convention),),
    )
