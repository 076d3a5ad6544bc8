"""safjax: memory-efficient, online training of spiking neural networks in JAX.

SAF-E, SAF-F, OTTT_A, OTTT_O, spike representation, BPTT and truncated BPTT behind one
interface (see ``safjax.methods``); the math is in docs/methods.md.
"""

import importlib

# Imported on first use (PEP 562), so that a process needing only the jax-free parts (a data
# worker of `safjax.data_loader`) does not import JAX.
_SUBMODULES = ("costs", "encoding", "inference", "losses", "methods", "neurons", "nn", "ops", "simulate",
               "surrogates")
_NAMES = {
    "TrainConfig": "safjax.train_config", "METHODS": "safjax.methods", "StepOutput": "safjax.methods",
    "get_method": "safjax.methods", "Network": "safjax.network", "Path": "safjax.network",
    "SpikingLayer": "safjax.network", "init_params": "safjax.network", "LIFConfig": "safjax.neurons",
    "LIFState": "safjax.neurons", "NeuronModel": "safjax.neurons", "init_lif_state": "safjax.neurons",
    "integrate_and_fire": "safjax.neurons", "lif": "safjax.neurons", "lif_step": "safjax.neurons",
    "make_train_step": "safjax.step_builder",
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"safjax.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'safjax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_NAMES))


__version__ = "0.1.0"

__all__ = [
    "METHODS", "LIFConfig", "LIFState", "Network", "NeuronModel", "Path", "SpikingLayer", "StepOutput",
    "TrainConfig", "costs", "encoding", "get_method", "inference", "init_lif_state", "init_params",
    "integrate_and_fire", "lif", "lif_step", "losses", "make_train_step", "methods", "neurons", "nn",
    "ops", "simulate", "surrogates",
]
