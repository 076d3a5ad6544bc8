"""Reference models, built from `safjax.nn` modules."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from safjax import neurons, nn


def neuron_module(neuron: str, leak: float, threshold: float, reset: str = "soft") -> nn.Neuron:
    """A layer of the registered neuron model ``neuron`` (`safjax.neurons.NEURONS`) with leak λ,
    threshold V_th and reset (``"soft"`` subtracts V_th, ``"hard"`` resets to 0)."""
    return nn.Neuron(neurons.make(neuron, leak, threshold, reset))


def sequential(modules: list, input_shape: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """``nn.Sequential(*modules)``, with ``nn.Dropout(dropout)`` after every neuron module when
    ``dropout > 0`` (a mask per minibatch held over T on each layer's spikes, docs/methods.md §1.7;
    with 0 the network and its parameters are exactly those without dropout)."""
    if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
        raise ValueError(f"`dropout` must be a rate in [0, 1), got {dropout!r}.")
    if dropout:
        modules = [m for module in modules
                   for m in ((module, nn.Dropout(dropout)) if isinstance(module, nn.Neuron) else (module,))]
    return nn.Sequential(*modules, input_shape=input_shape)


def scaled(channels: int, width: float) -> int:
    """``channels`` × the width multiplier ``width`` (> 0), rounded, at least 1."""
    if not width > 0:
        raise ValueError(f"`width` must be a channel-width multiplier > 0, got {width!r}.")
    return max(1, round(channels * width))


def digits_mlp(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
               num_classes: int = 10, input_shape: tuple[int, ...] = (8, 8, 1),
               hidden: int = 256, width: float = 1.0, dropout: float = 0.0,
               reset: str = "soft") -> nn.Sequential:
    """Flattened image (8×8×1 digits) → ``hidden``·``width`` spiking neurons → ``num_classes`` readout."""
    hidden = scaled(hidden, width)
    return sequential([
        nn.Flatten(), nn.Dense(math.prod(input_shape), hidden, rngs=rngs),
        neuron_module(neuron, leak, threshold, reset), nn.Dense(hidden, num_classes, rngs=rngs),
    ], input_shape, dropout)


VGG11_CHANNELS = (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512)
WS_SCALE = 2.74  # fixed scale after each LIF in the reference VGG (docs/methods.md §8)
# α of NF-ResNets (OTTT's value): a BasicBlock's residual branch enters its output cell × α, so the
# identity shortcut dominates at init and firing rates stay flat with depth. At init, T = 4, every
# cell of ResNet-34 fires 7–14 % on normalised real CIFAR-10 and 15–30 % on normalised uniform noise;
# with α = 1 the identity blocks' cells climb to ~75 % within stage 3.
RESNET_BRANCH_SCALE = 0.2


def vgg11_sws(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
              num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3),
              feedback: bool = False, width: float = 1.0, dropout: float = 0.0,
              reset: str = "soft") -> nn.Sequential:
    """VGG-11 (sWS) of docs/methods.md §8: 3×3 scaled-WS convs
    [64, 128, A, 256, 256, A, 512, 512, A, 512, 512], A = average pool 2, LIF and a fixed ×2.74
    after each conv, no BatchNorm, global average pool and a dense readout. Any input size
    divisible by 8 and any channel count (2 for DVS frames).

    ``width`` multiplies every conv's channel count (same depth, pools, sWS and ×2.74 scales):
    ``width=0.125`` (8…64 channels) trains on a 2-core CPU in minutes.

    ``feedback=True`` is VGG-F (docs/methods.md §8): a scaled-WS conv 512→64 from the last layer's
    spikes at t − 1, nearest-upsampled ×8 to the first layer's size, added to layer 1's current.
    """
    if input_shape[0] % 8 or input_shape[1] % 8:
        raise ValueError(f"VGG-11 pools three times: `input_shape` {input_shape} needs H and W "
                         "divisible by 8.")
    modules, channels, first = [], input_shape[-1], True
    if feedback:
        modules.append(nn.Feedback(-1, nn.ScaledWSConv(scaled(VGG11_CHANNELS[-1], width),
                                                       scaled(VGG11_CHANNELS[0], width), rngs=rngs),
                                   nn.Upsample(8)))
    for spec in VGG11_CHANNELS:
        if spec == "A":
            modules.append(nn.AvgPool(2))
            continue
        if not first:
            modules.append(nn.Scale(WS_SCALE))
        spec = scaled(spec, width)
        modules += [nn.ScaledWSConv(channels, spec, rngs=rngs), neuron_module(neuron, leak, threshold, reset)]
        channels, first = spec, False
    modules += [nn.Scale(WS_SCALE), nn.GlobalAvgPool(), nn.Dense(channels, num_classes, rngs=rngs)]
    return sequential(modules, input_shape, dropout)


def vgg_f(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
          num_classes: int = 100, input_shape: tuple[int, int, int] = (32, 32, 3),
          width: float = 1.0, dropout: float = 0.0,
          reset: str = "soft") -> nn.Sequential:
    """VGG-F (docs/methods.md §8, the CIFAR-100 model): `vgg11_sws` with the 512→64 feedback into
    layer 1."""
    return vgg11_sws(rngs, neuron, leak, threshold, num_classes, input_shape, feedback=True, width=width,
                     dropout=dropout, reset=reset)


ALEXNET_CHANNELS = (64, "A", 192, "A", 384, 256, 256, "A")


def alexnet_snn(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
                num_classes: int = 10, input_shape: tuple[int, int, int] = (48, 48, 2),
                hidden: int = 512, width: float = 1.0, dropout: float = 0.0,
                reset: str = "soft") -> nn.Sequential:
    """An AlexNet-style SNN for DVS frames (48×48×2 CIFAR10-DVS by default): 3×3 convs
    [64, A, 192, A, 384, 256, 256, A] each followed by LIF, a spiking dense layer of ``hidden``
    neurons and a dense readout (six spiking layers); ``width`` multiplies every width."""
    hidden = scaled(hidden, width)
    if input_shape[0] % 8 or input_shape[1] % 8:
        raise ValueError(f"alexnet_snn pools three times: `input_shape` {input_shape} needs H and W "
                         "divisible by 8.")
    modules, channels = [], input_shape[-1]
    for spec in ALEXNET_CHANNELS:
        if spec == "A":
            modules.append(nn.AvgPool(2))
            continue
        spec = scaled(spec, width)
        modules += [nn.Conv(channels, spec, rngs=rngs), neuron_module(neuron, leak, threshold, reset)]
        channels = spec
    flat = (input_shape[0] // 8) * (input_shape[1] // 8) * channels
    modules += [nn.Flatten(), nn.Dense(flat, hidden, rngs=rngs), neuron_module(neuron, leak, threshold, reset),
                nn.Dense(hidden, num_classes, rngs=rngs)]
    return sequential(modules, input_shape, dropout)


def event_conv(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
               num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 2),
               hidden: int = 128, width: float = 1.0, dropout: float = 0.0,
               reset: str = "soft") -> nn.Sequential:
    """A small four-layer conv SNN for the embedded event digits (CPU-sized): conv 16, LIF,
    avg-pool 2, conv 32, LIF, avg-pool 2, conv 32, LIF, dense ``hidden``, LIF, dense readout;
    ``width`` multiplies every width."""
    if input_shape[0] % 4 or input_shape[1] % 4:
        raise ValueError(f"event_conv pools twice: `input_shape` {input_shape} needs H and W divisible by 4.")
    c1, c2, hidden = scaled(16, width), scaled(32, width), scaled(hidden, width)
    flat = (input_shape[0] // 4) * (input_shape[1] // 4) * c2
    return sequential([
        nn.Conv(input_shape[-1], c1, rngs=rngs), neuron_module(neuron, leak, threshold, reset), nn.AvgPool(2),
        nn.Conv(c1, c2, rngs=rngs), neuron_module(neuron, leak, threshold, reset), nn.AvgPool(2),
        nn.Conv(c2, c2, rngs=rngs), neuron_module(neuron, leak, threshold, reset),
        nn.Flatten(), nn.Dense(flat, hidden, rngs=rngs), neuron_module(neuron, leak, threshold, reset),
        nn.Dense(hidden, num_classes, rngs=rngs),
    ], input_shape, dropout)


def reference_conv(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
                   num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3),
                   width: float = 1.0, dropout: float = 0.0,
                   reset: str = "soft") -> nn.Sequential:
    """The peer-comparison network: conv3×3 C→64, LIF, conv 64→128, LIF, avg-pool 2,
    conv 128→128, LIF, avg-pool 2, dense → ``num_classes``; ``width`` multiplies every width."""
    size, c1, c2 = input_shape[0] // 4, scaled(64, width), scaled(128, width)
    return sequential([
        nn.Conv(input_shape[-1], c1, rngs=rngs), neuron_module(neuron, leak, threshold, reset),
        nn.Conv(c1, c2, rngs=rngs), neuron_module(neuron, leak, threshold, reset),
        nn.AvgPool(2), nn.Conv(c2, c2, rngs=rngs), neuron_module(neuron, leak, threshold, reset),
        nn.AvgPool(2), nn.Flatten(), nn.Dense(size * size * c2, num_classes, rngs=rngs),
    ], input_shape, dropout)


RESNET_CHANNELS = (64, 128, 256, 512)  # the four stages' widths at width = 1
RESNET_NORMS = ("sws", "batchnorm")
RESNET_STEMS = ("cifar", "imagenet")


class BasicBlock(nnx.Module):
    """A spiking ResNet BasicBlock, one time step: x [B, H, W, C_in] → [B, H/stride, W/stride, C].

    The residual is a sum of currents into the block's second cell:
    ``s = lif2(conv2(lif1(conv1(x))) + shortcut(x))``, the shortcut the identity or, where the
    shape changes, a 1×1 conv of stride ``stride``. ``norm="sws"``: scaled-WS convs, every cell's
    spikes ×`WS_SCALE` before they feed a conv or the shortcut (the block's input ``x`` is such a
    scaled signal, and so is its output) and the residual branch × `RESNET_BRANCH_SCALE`; affine
    between cells, so every method trains it. ``norm="batchnorm"``: convs without bias, each
    followed by ``nnx.BatchNorm``; spikes unscaled.
    """

    def __init__(self, in_channels: int, channels: int, stride: int, cell, norm: str, dropout: float,
                 rngs: nnx.Rngs):
        self.sws, self.stride = norm == "sws", stride
        self.conv1, self.bn1 = _conv_norm(in_channels, channels, 3, norm, rngs)
        self.lif1 = cell()
        self.conv2, self.bn2 = _conv_norm(channels, channels, 3, norm, rngs)
        self.shortcut, self.bn_shortcut = (None, None) if stride == 1 and in_channels == channels \
            else _conv_norm(in_channels, channels, 1, norm, rngs)
        self.lif2 = cell()
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None

    def __call__(self, x):
        scale = WS_SCALE if self.sws else 1.0
        h = scale * self.lif1(_apply(self.conv1, self.bn1, x, self.stride))
        branch = _apply(self.conv2, self.bn2, h)
        if self.sws:
            branch = RESNET_BRANCH_SCALE * branch
        shortcut = x if self.shortcut is None else _apply(self.shortcut, self.bn_shortcut, x, self.stride)
        s = self.lif2(branch + shortcut)
        if self.dropout is not None:
            s = self.dropout(s)
        return scale * s


def _conv_norm(in_channels: int, channels: int, kernel_size: int, norm: str, rngs: nnx.Rngs):
    """(conv, BatchNorm or None): a scaled-WS conv with bias (``"sws"``), or a conv without bias and
    its BatchNorm (``"batchnorm"``); stride 1, 'SAME' (`strided_conv` strides it)."""
    if norm == "sws":
        return nn.ScaledWSConv(in_channels, channels, kernel_size, rngs=rngs), None
    return (nn.Conv(in_channels, channels, kernel_size, use_bias=False, rngs=rngs),
            nnx.BatchNorm(channels, rngs=rngs))


def _apply(conv, bn, x, stride: int = 1):
    y = strided_conv(conv, x, stride)
    return y if bn is None else bn(y)


def strided_conv(conv: nn.Conv | nn.ScaledWSConv, x, stride: int, subsample: bool | None = None):
    """``conv`` (a stride-1 'SAME' conv module, odd kernel k) at stride ``stride``: x [B, H, W, C] →
    [B, ⌈H/s⌉, ⌈W/s⌉, C'], output pixel i centred on input pixel s·i (PyTorch's stride-s conv with
    padding k//2, torchvision's ResNets).

    ``subsample`` (default: on XLA:CPU) computes it as the stride-1 conv sampled every s pixels,
    whose weight gradient stays on XLA:CPU's fast path inside the time loop (`safjax.conv`; a
    strided conv's is not: a BPTT step of ResNet-18 at width 1/8 took twice as long with them);
    otherwise as a strided 'VALID' conv of the input padded by k//2 (no wasted work). Same values
    either way; a 1×1 conv samples its input first (exact, no waste on any backend)."""
    if stride == 1:
        return conv(x)
    k = conv.op.kernel_size
    if k == 1:
        return conv(x[:, ::stride, ::stride])
    if jax.default_backend() == "cpu" if subsample is None else subsample:
        return conv(x)[:, ::stride, ::stride]
    pad = k // 2
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return dataclasses.replace(conv.op, stride=stride, padding="VALID").apply(conv.params(), padded)


class SpikingResNet(nnx.Module):
    """A spiking ResNet of `BasicBlock` s, one time step: ``__call__(x_t [B, H, W, C]) -> [B, num_classes]``.

    Stem: ``"cifar"``, a 3×3 conv and a cell (no pooling); ``"imagenet"``, a 7×7 conv of stride 2, a
    cell and a 2×2 average pool (max pooling is not affine). Then ``blocks[i]`` blocks of
    ``RESNET_CHANNELS[i]``·``width`` channels per stage, stages 2–4 downsampling by 2 in their first
    block, a global average pool and a dense readout. See `resnet18` for ``norm``.
    """

    def __init__(self, blocks: tuple[int, ...], cell, rngs: nnx.Rngs, num_classes: int = 10,
                 in_channels: int = 3, width: float = 1.0, dropout: float = 0.0, norm: str = "sws",
                 stem: str = "cifar"):
        if norm not in RESNET_NORMS:
            raise ValueError(f"`norm` must be one of {', '.join(map(repr, RESNET_NORMS))}, got {norm!r}.")
        if stem not in RESNET_STEMS:
            raise ValueError(f"`stem` must be one of {', '.join(map(repr, RESNET_STEMS))}, got {stem!r}.")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"`dropout` must be a rate in [0, 1), got {dropout!r}.")
        self.sws, self.imagenet_stem = norm == "sws", stem == "imagenet"
        channels = scaled(RESNET_CHANNELS[0], width)
        self.stem, self.bn_stem = _conv_norm(in_channels, channels, 7 if self.imagenet_stem else 3, norm, rngs)
        self.lif_stem = cell()
        self.pool = nn.AvgPool(2) if self.imagenet_stem else None
        layers = []
        for stage, (count, base) in enumerate(zip(blocks, RESNET_CHANNELS)):
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(channels, scaled(base, width), stride, cell, norm, dropout, rngs))
                channels = scaled(base, width)
        self.blocks = nnx.List(layers)
        self.readout = nn.Dense(channels, num_classes, rngs=rngs)

    def __call__(self, x_t):
        stem = _apply(self.stem, self.bn_stem, x_t, 2 if self.imagenet_stem else 1)
        x = (WS_SCALE if self.sws else 1.0) * self.lif_stem(stem)
        if self.pool is not None:
            x = self.pool(x)
        for block in self.blocks:
            x = block(x)
        return self.readout(jnp.mean(x, axis=(1, 2)))


def _resnet(blocks, rngs, neuron, leak, threshold, num_classes, input_shape, width, dropout, reset, norm, stem):
    if len(input_shape) != 3:
        raise ValueError(f"a ResNet takes images: `input_shape` must be (H, W, C), got {input_shape}.")
    stem = stem or ("imagenet" if min(input_shape[:2]) >= 128 else "cifar")
    return SpikingResNet(blocks, lambda: neuron_module(neuron, leak, threshold, reset), rngs, num_classes,
                         input_shape[-1], width, dropout, norm, stem)


def resnet18(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
             num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3), width: float = 1.0,
             dropout: float = 0.0, reset: str = "soft", norm: str = "sws", stem: str = "") -> SpikingResNet:
    """Spiking ResNet-18 (`SpikingResNet`, [2, 2, 2, 2] BasicBlocks of 64, 128, 256, 512 channels ×
    ``width``), a plain Flax model stepping one time step (train it with `safjax.make_train_step` or
    ``experiments.train --model=resnet18``).

    ``norm="sws"`` (the NF-ResNet form OTTT trains online): scaled-WS convs, no BatchNorm, spikes
    ×`WS_SCALE` into every conv and the residual branch ×`RESNET_BRANCH_SCALE`; affine between the
    cells, so all nine methods train it. Its scaling assumes normalised inputs (per channel, as the
    input pipeline feeds them): a scaled-WS kernel sums to zero, so raw [0, 1] pixels drive the stem
    by their contrast alone and it barely fires at init.

    ``norm="batchnorm"`` (the form SLTT and BPTT use): convs and ``nnx.BatchNorm`` (each step
    normalised by its batch statistics, running statistics updated every step and used after
    ``model.eval()``); bptt, tbptt, sltt and sltt_k train it, SAF, OTTT and SR refuse it (batch
    statistics are not affine in the cells' signals).

    ``dropout > 0``: ``nnx.Dropout`` after each block's output cell (the engine holds one mask over
    T). ``stem``: ``"cifar"`` (3×3 conv) or ``"imagenet"`` (7×7 stride-2 conv, 2×2 average pool);
    ``""``: ``"imagenet"`` for inputs of 128 pixels or more a side (ImageNet's 224²), else ``"cifar"``.
    """
    return _resnet((2, 2, 2, 2), rngs, neuron, leak, threshold, num_classes, input_shape, width, dropout,
                   reset, norm, stem)


def resnet34(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
             num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3), width: float = 1.0,
             dropout: float = 0.0, reset: str = "soft", norm: str = "sws", stem: str = "") -> SpikingResNet:
    """Spiking ResNet-34: `resnet18` with [3, 4, 6, 3] BasicBlocks."""
    return _resnet((3, 4, 6, 3), rngs, neuron, leak, threshold, num_classes, input_shape, width, dropout,
                   reset, norm, stem)


def resnet34_bn(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
                num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3), width: float = 1.0,
                dropout: float = 0.0, reset: str = "soft") -> SpikingResNet:
    """`resnet34` with BatchNorm (``norm="batchnorm"``): SLTT's ResNet-34 (bptt, tbptt, sltt, sltt_k)."""
    return resnet34(rngs, neuron, leak, threshold, num_classes, input_shape, width, dropout, reset, norm="batchnorm")


MODELS = {
    "digits_mlp": digits_mlp,
    "event_conv": event_conv,
    "vgg11_sws": vgg11_sws,
    "vgg_f": vgg_f,
    "alexnet_snn": alexnet_snn,
    "reference_conv": reference_conv,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet34_bn": resnet34_bn,
}


# --- VGG-11 (sWS) written as a plain Flax NNX model (issue 17 item 7) --------------------------------
# The network of `vgg11_sws`, written the way a user writes their own model: safjax layers and cells
# called in ``__call__``, no Sequential. Methods train it through the engine's Flax front-end
# (`safjax.engine.flax_model`); the benchmark compares its cost with the Sequential's
# (docs/benchmarks.md, "No cost for the openness").


class VGG11SWSFlax(nnx.Module):
    """`vgg11_sws` as a plain Flax model: one time step x_t [B, H, W, C] → class scores [B, classes].

    Per block: current = ScaledWSConv(x) (+ the VGG-F feedback into block 1), s = cell(current),
    optional dropout, average pool 2 after blocks 2, 4 and 6, then the fixed ×`WS_SCALE`; after the
    last block, global average pool and a dense readout. Layers are made in the Sequential's order,
    so one seed gives both the same weights.
    """

    def __init__(self, rngs: nnx.Rngs, neuron: str, leak: float, threshold: float, num_classes: int,
                 input_shape: tuple[int, int, int], feedback: bool, width: float, dropout: float, reset: str):
        if input_shape[0] % 8 or input_shape[1] % 8:
            raise ValueError(f"VGG-11 pools three times: `input_shape` {input_shape} needs H and W "
                             "divisible by 8.")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"`dropout` must be a rate in [0, 1), got {dropout!r}.")
        widths = [scaled(spec, width) for spec in VGG11_CHANNELS if spec != "A"]
        # VGG-F: the last cell's spikes at t − 1 → conv → ×8 upsample, into block 1's current
        self.feedback = nn.ScaledWSConv(widths[-1], widths[0], rngs=rngs) if feedback else None
        self.upsample = nn.Upsample(8)
        convs, cells, channels = [], [], input_shape[-1]
        for features in widths:
            convs.append(nn.ScaledWSConv(channels, features, rngs=rngs))
            cells.append(neuron_module(neuron, leak, threshold, reset))
            channels = features
        if feedback:  # read with previous() before it fires: it needs its per-example shape
            cells[-1] = nn.Neuron(cells[-1].config, shape=(input_shape[0] // 8, input_shape[1] // 8, widths[-1]))
        self.convs, self.cells = nnx.List(convs), nnx.List(cells)
        blocks = [i for i, spec in enumerate(VGG11_CHANNELS) if spec != "A"]
        self.pool_after = tuple(j for j, i in enumerate(blocks) if i + 1 < len(VGG11_CHANNELS)
                                and VGG11_CHANNELS[i + 1] == "A")  # (1, 3, 5)
        self.pool = nn.AvgPool(2)
        self.readout = nn.Dense(channels, num_classes, rngs=rngs)
        # after the readout: nnx.Dropout draws from `rngs` too, and the Sequential's Dropout does not
        self.dropouts = nnx.List([nnx.Dropout(dropout, rngs=rngs) for _ in cells] if dropout else [])

    def __call__(self, x):
        for j, (conv, cell) in enumerate(zip(self.convs, self.cells)):
            current = conv(x)
            if j == 0 and self.feedback is not None:
                current = current + self.upsample(self.feedback(self.cells[-1].previous()))
            x = cell(current)
            if self.dropouts:
                x = self.dropouts[j](x)
            if j in self.pool_after:
                x = self.pool(x)
            x = WS_SCALE * x
        return self.readout(x.mean(axis=(1, 2)))


def vgg11_sws_flax(rngs: nnx.Rngs, neuron: str = "lif", leak: float = 0.5, threshold: float = 1.0,
                   num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3),
                   feedback: bool = False, width: float = 1.0, dropout: float = 0.0,
                   reset: str = "soft") -> VGG11SWSFlax:
    """`vgg11_sws` (same arguments, same network) written as a plain Flax model (`VGG11SWSFlax`);
    its params are ``nnx.state(model, nnx.Param)`` and methods train it through the engine."""
    return VGG11SWSFlax(rngs, neuron, leak, threshold, num_classes, tuple(input_shape), feedback, width,
                        dropout, reset)


MODELS["vgg11_sws_flax"] = vgg11_sws_flax
