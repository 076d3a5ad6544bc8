"""Neuron models, looked up by name through one registry (docs/methods.md §1.2).

Every model implements the protocol of `safjax.neurons.base` (state init, step, capabilities);
the network, the methods and the Flax modules use only that protocol. A new neuron is one file
here and one line in ``NEURONS`` (see docs/extending.md).
"""

from __future__ import annotations

from typing import Callable

from safjax.neurons.alif import ALIFConfig, ALIFState, alif, alif_step, init_alif_state
from safjax.neurons.base import ACCUMULATION, TRACES, NeuronModel, check_neuron, require
from safjax.neurons.lif import (RESET_MODES, LIFConfig, LIFState, init_lif_state, integrate_and_fire, lif,
                                lif_step)

# name → factory(leak, threshold, reset) of a neuron model with that leak λ, threshold V_th and reset
# ("soft" or "hard"; the run configuration's --neuron, --leak, --threshold, --reset); the factory's
# other settings keep their defaults.
NEURONS: dict[str, Callable[..., NeuronModel]] = {
    "lif": lambda leak, threshold, reset: lif(leak, threshold, reset),
    "if": lambda leak, threshold, reset: integrate_and_fire(threshold, reset),
    "alif": lambda leak, threshold, reset: alif(leak, threshold, reset=reset),
}


def make(name: str, leak: float = 0.5, threshold: float = 1.0, reset: str = "soft") -> NeuronModel:
    """The registered neuron ``name`` with leak λ, threshold V_th and reset; a clear error otherwise."""
    if name not in NEURONS:
        raise ValueError(f"unknown neuron {name!r}; valid neurons: {', '.join(NEURONS)}.")
    return NEURONS[name](leak, threshold, reset)


__all__ = ["ACCUMULATION", "NEURONS", "RESET_MODES", "TRACES", "ALIFConfig", "ALIFState", "LIFConfig",
           "LIFState", "NeuronModel", "alif", "alif_step", "check_neuron", "init_alif_state", "init_lif_state",
           "integrate_and_fire", "lif", "lif_step", "make", "require"]
