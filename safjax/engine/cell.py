"""A neuron cell inside any model (`safjax.nn.Neuron`, `LIF`, `IF`): what its call does
(docs/methods.md §10.1).

Under the engine (a method's step is being traced) the cell hands its current to the runtime, which
steps it in the method's mode with the state the engine carries. Called by hand (a user's own time
loop), it is an ordinary stateful Flax layer: its state lives in a `CellState` variable, starts at
zero from the first current's shape, and `reset` clears it between sequences.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from safjax.engine import runtime as runtime_lib


class CellState(nnx.Variable):
    """A cell's neuron state between calls made by hand (the engine carries its own)."""


def fire(cell, current):
    """Cell ``cell`` receives I[t] [B, ...] → its signal (spikes s[t] outside the engine)."""
    runtime = runtime_lib.active_runtime()
    if runtime is not None:
        return runtime.cell(runtime.index_of(cell), current)
    state = cell.state.get_value()
    if state is None or state.s.shape != current.shape:
        state = cell.config.init_state(current.shape, current.dtype)
    state, s = cell.config.step(state, current)
    cell.state.set_value(state)
    return s


def previous(cell):
    """The cell's signal at t − 1 (a feedback path): read it before the cell fires at t."""
    runtime = runtime_lib.active_runtime()
    if runtime is not None:
        return runtime.previous(runtime.index_of(cell))
    state = cell.state.get_value()
    if state is None and cell.shape is not None:  # before the first step: zeros, broadcast over B
        return jnp.zeros((1,) + cell.shape)
    if state is None:
        raise ValueError(
            f"{cell.config.describe()} cell: previous() before its first call has no shape; give the cell "
            "its per-example shape (e.g. LIF(shape=(128,))) or call it once first.")
    return state.s


def reset(model) -> None:
    """Clear every cell's state in ``model`` (between sequences, when stepping cells by hand)."""
    for _, node in nnx.iter_graph(model):
        if isinstance(node, CellState):
            node.set_value(None)
