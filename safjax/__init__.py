"""safjax: memory-efficient, online training of spiking neural networks in JAX.

SAF-E, SAF-F, OTTT_A, OTTT_O, spike representation, BPTT and truncated BPTT behind one
interface (see ``safjax.methods``); the math is in docs/methods.md.
"""

from safjax import costs, encoding, inference, losses, methods, neurons, nn, ops, simulate, surrogates
from safjax.train_config import TrainConfig
from safjax.methods import METHODS, StepOutput, get_method
from safjax.network import Network, Path, SpikingLayer, init_params
from safjax.neurons import LIFConfig, LIFState, NeuronModel, init_lif_state, integrate_and_fire, lif, lif_step
from safjax.step_builder import make_train_step

__version__ = "0.1.0"

__all__ = [
    "METHODS", "LIFConfig", "LIFState", "Network", "NeuronModel", "Path", "SpikingLayer", "StepOutput",
    "TrainConfig", "costs", "encoding", "get_method", "inference", "init_lif_state", "init_params",
    "integrate_and_fire", "lif", "lif_step", "losses", "make_train_step", "methods", "neurons", "nn",
    "ops", "simulate", "surrogates",
]
