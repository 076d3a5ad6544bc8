"""Reference models, built from `safjax.nn` modules."""

from __future__ import annotations

from flax import nnx

from safjax import nn


def neuron_module(neuron: str, leak: float, threshold: float) -> nn.LIF:
    """``"lif"`` (leak λ) or ``"if"`` (λ = 1) neurons with threshold V_th."""
    if neuron == "lif":
        return nn.LIF(leak, threshold)
    if neuron == "if":
        return nn.IF(threshold)
    raise ValueError(f"`neuron` must be 'lif' or 'if', got {neuron!r}.")


def digits_mlp(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
               hidden: int = 256, num_classes: int = 10) -> nn.Sequential:
    """8×8×1 digits → 64 → ``hidden`` spiking neurons → ``num_classes`` readout."""
    return nn.Sequential(
        nn.Flatten(), nn.Dense(64, hidden, rngs=rngs), neuron_module(neuron, leak, threshold),
        nn.Dense(hidden, num_classes, rngs=rngs),
        input_shape=(8, 8, 1),
    )


MODELS = {"digits_mlp": digits_mlp}
