"""Reference models, built from `safjax.nn` modules."""

from __future__ import annotations

import math

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
               num_classes: int = 10, input_shape: tuple[int, ...] = (8, 8, 1),
               hidden: int = 256) -> nn.Sequential:
    """Flattened image (8×8×1 digits) → ``hidden`` spiking neurons → ``num_classes`` readout."""
    return nn.Sequential(
        nn.Flatten(), nn.Dense(math.prod(input_shape), hidden, rngs=rngs),
        neuron_module(neuron, leak, threshold), nn.Dense(hidden, num_classes, rngs=rngs),
        input_shape=input_shape,
    )


VGG11_CHANNELS = (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512)
WS_SCALE = 2.74  # fixed scale after each LIF in the reference VGG (spec §8)


def vgg11_sws(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
              num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3)) -> nn.Sequential:
    """VGG-11 (sWS) of spec §8: 3×3 scaled-WS convs [64, 128, A, 256, 256, A, 512, 512, A, 512, 512],
    A = average pool 2, LIF and a fixed ×2.74 after each conv, no BatchNorm, global average pool
    and a dense readout."""
    modules, channels, first = [], input_shape[-1], True
    for spec in VGG11_CHANNELS:
        if spec == "A":
            modules.append(nn.AvgPool(2))
            continue
        if not first:
            modules.append(nn.Scale(WS_SCALE))
        modules += [nn.ScaledWSConv(channels, spec, rngs=rngs), neuron_module(neuron, leak, threshold)]
        channels, first = spec, False
    modules += [nn.Scale(WS_SCALE), nn.GlobalAvgPool(), nn.Dense(channels, num_classes, rngs=rngs)]
    return nn.Sequential(*modules, input_shape=input_shape)


def reference_conv(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
                   num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3)) -> nn.Sequential:
    """The peer-comparison network: conv3×3 C→64, LIF, conv 64→128, LIF, avg-pool 2,
    conv 128→128, LIF, avg-pool 2, dense → ``num_classes``."""
    size = input_shape[0] // 4
    return nn.Sequential(
        nn.Conv(input_shape[-1], 64, rngs=rngs), neuron_module(neuron, leak, threshold),
        nn.Conv(64, 128, rngs=rngs), neuron_module(neuron, leak, threshold),
        nn.AvgPool(2), nn.Conv(128, 128, rngs=rngs), neuron_module(neuron, leak, threshold),
        nn.AvgPool(2), nn.Flatten(), nn.Dense(size * size * 128, num_classes, rngs=rngs),
        input_shape=input_shape,
    )


MODELS = {"digits_mlp": digits_mlp, "vgg11_sws": vgg11_sws, "reference_conv": reference_conv}
