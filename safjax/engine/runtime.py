"""The runtime a model's step runs under: which mode its cells are in, their states at t − 1,
and what they produce at t.

A front-end (`network_model`, `flax_model`) calls ``runtime.cell(i, current)`` where its i-th cell
fires and ``runtime.previous(i)`` where it reads cell i at t − 1 (a feedback path); everything
else in the step is the model's own code. The runtime is built by `steps.run_step` for one step
and lives only while that step is traced.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("safjax_engine_runtime", default=None)


class Runtime:
    """One step of a model under ``mode``.

    Attributes:
      mode: a `modes.Mode`.
      neurons: the cells' neuron models, in cell order.
      states: the cells' mode states at t − 1, in cell order.
      context: the step's `modes.Context` (c_t, the signal scale, ...).
      names: the cells' names, for messages.
    """

    def __init__(self, mode, neurons: tuple, states: tuple, context, names: tuple):
        self.mode, self.neurons, self.states, self.context, self.names = mode, neurons, states, context, names
        self.new_states: list[Any] = [None] * len(neurons)
        self.spikes: list[Any] = [None] * len(neurons)
        self.currents: list[Any] = [None] * len(neurons)
        self.order: list[int] = []  # cell indices in the order they fired
        self.model_state = self.new_model_state = None  # the model's own state (running statistics)
        self.cell_indices: dict[int, int] = {}  # id(cell module) → cell index (Flax front-end)

    def index_of(self, cell) -> int:
        """The index of a cell module of the model being stepped."""
        try:
            return self.cell_indices[id(cell)]
        except KeyError:
            raise ValueError(
                f"a {type(cell).__name__} cell that is not part of the model being trained was called in "
                "its step; make every cell an attribute (or a sub-module's attribute) of the model.") from None

    @property
    def bias_scale(self):
        """The weight of every bias at this step, for front-ends whose operators take it (1 when the
        mode's signals are normalised instead)."""
        return self.context.bias_scale

    def cell(self, index: int, current):
        """Cell ``index`` fires: its input current I[t] [B, ...] → the signal the model passes on."""
        if self.new_states[index] is not None:
            raise ValueError(
                f"cell {self.names[index]} was called twice in one time step; a cell is one layer of "
                "neurons: use a separate cell for each layer.")
        state, signal, spikes = self.mode.step(self.neurons[index], self.states[index], current, self.context, index)
        self.new_states[index], self.spikes[index], self.currents[index] = state, spikes, current
        self.order.append(index)
        return signal

    def previous(self, index: int):
        """Cell ``index``'s signal at t − 1 (a feedback path), whether or not it has fired at t."""
        return self.mode.previous(self.neurons[index], self.states[index], self.context)

    def finish(self) -> tuple[tuple, tuple, tuple]:
        """(new states, spikes s[t], input currents I[t]), each in cell order; refuses a cell the
        step never called (its state would silently stop at t − 1)."""
        missing = [self.names[i] for i, s in enumerate(self.new_states) if s is None]
        if missing:
            raise ValueError(
                f"cells {missing} were not called in this time step; every cell must fire once per "
                "step (call it in __call__, or remove it from the model).")
        return tuple(self.new_states), tuple(self.spikes), tuple(self.currents)


def active_runtime():
    """The runtime of the step being traced, or None outside the engine (a cell stepped by hand)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def activate(runtime: Runtime):
    token = _ACTIVE.set(runtime)
    try:
        yield runtime
    finally:
        _ACTIVE.reset(token)
