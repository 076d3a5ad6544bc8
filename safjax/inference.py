"""Inference conversion (docs/methods.md §4): run SAF- or OTTT-trained parameters in the plain LIF SNN,
which propagates spikes only, and compare it with the training-mode (SAF) forward.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from safjax import network as network_lib
from safjax import simulate
from safjax.methods import saf

Array = jax.Array


def lif_outputs(net: network_lib.Network, params, inputs: Array) -> Array:
    """Readout o[t] of the spike-propagating LIF SNN, [T, B, C]."""
    outputs, _ = simulate.run(net, params, inputs)
    return outputs


def saf_outputs(net: network_lib.Network, params, inputs: Array) -> Array:
    """Readout o[t] = Û^o[t] − λ Û^o[t−1] of the SAF (training-mode) forward, [T, B, C]."""
    leak = saf.validate(net, "saf inference")
    state = saf.init_state(net, inputs.shape[1], inputs.dtype)

    def body(state, x_t):
        state, (output, _, _) = saf.saf_step(net, leak, params, state, x_t)
        return state, output

    _, outputs = jax.lax.scan(body, state, inputs)
    return outputs


def compare(net: network_lib.Network, params, inputs: Array, labels: Array | None = None) -> dict:
    """Training-mode (SAF) vs inference (LIF) outputs for the same parameters.

    Returns ``max_abs_output_difference``, ``prediction_agreement`` (fraction of examples whose
    argmax of Σ_t o[t] agrees) and, with ``labels``, both accuracies.
    """
    trained = saf_outputs(net, params, inputs).sum(0)
    converted = lif_outputs(net, params, inputs).sum(0)
    report = {
        "max_abs_output_difference": float(jnp.max(jnp.abs(trained - converted))),
        "prediction_agreement": float(
            jnp.mean(jnp.argmax(trained, -1) == jnp.argmax(converted, -1))
        ),
    }
    if labels is not None:
        report["training_mode_accuracy"] = float(jnp.mean(jnp.argmax(trained, -1) == labels))
        report["inference_accuracy"] = float(jnp.mean(jnp.argmax(converted, -1) == labels))
    return report
