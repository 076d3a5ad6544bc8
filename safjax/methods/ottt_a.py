"""OTTT_A (docs/methods.md §3): OTTT gradients summed over the T steps, one optimizer update per
minibatch."""

from __future__ import annotations

from safjax.methods import online, ottt

NAME = "ottt_a"

train_step = online.make_train_step(ottt.make_step_loss, ottt.init_state, NAME, update_every_step=False)
