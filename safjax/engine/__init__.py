"""One engine for every model: how a method makes neuron cells behave (docs/methods.md §10).

A model, to the engine, is a per-time-step function whose only nonlinear, stateful parts are neuron
cells: `safjax.Network` (through `network_model`) and any Flax NNX module built from Flax layers and
`safjax.nn` cells (through `flax_model`). A method runs that step function with the cells in one
*mode* (`modes`): spiking (BPTT, TBPTT, SLTT, OTTT's value pass, SR's measurement), accumulating
(SAF), trace (OTTT's gradient pass) or rate (SR). The per-step functions every method builds on are
in `steps`.
"""

from safjax.engine.modes import Accumulating, Mode, Rate, Spiking, Trace
from safjax.engine.runtime import Runtime, active_runtime
from safjax.engine.step_model import StepModel, as_step_model

__all__ = ["Accumulating", "Mode", "Rate", "Runtime", "Spiking", "StepModel", "Trace", "active_runtime",
           "as_step_model"]
