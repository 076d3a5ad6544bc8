"""Named presets (``--config=<name>``): the paper setups of docs/methods.md §8 as data. Flags given on the
command line override a preset's values."""

from __future__ import annotations

_CIFAR = dict(time_steps=6, batch_size=128, optimizer="sgd", learning_rate=0.1, momentum=0.9,
              schedule="cosine", epochs=300, mse_weight=0.05, augment=True)
# ImageNet-2012 (TFDS ArrayRecord files, see README): ResNet-34, T = 6, batch 256, SGD 0.1 momentum 0.9, cosine
# over 100 epochs, the ImageNet recipe at 224×224 (random-resized crop + flip; resize 256 + centre crop to test);
# the loss as the CIFAR presets (γ = 0.05).
_IMAGENET = dict(dataset="imagenet2012", model="resnet34", time_steps=6, batch_size=256, optimizer="sgd",
                 learning_rate=0.1, momentum=0.9, schedule="cosine", epochs=100, mse_weight=0.05, augment=True,
                 image_size=224)

PRESETS: dict[str, dict] = {
    # The README's main job (also the flag defaults).
    "digits": dict(method="saf_e", dataset="digits", model="digits_mlp", time_steps=4, epochs=10),
    # SAF / OTTT CIFAR-10: VGG-11 (sWS), T = 6, SGD 0.1 momentum 0.9, cosine over 300 epochs.
    "cifar10_vgg11": dict(_CIFAR, method="saf_e", dataset="cifar10", model="vgg11_sws"),
    # The same on the offline JPEG copy: pass --dataset=image_folder:<root> with this preset.
    "image_folder_vgg11": dict(_CIFAR, method="saf_e", model="vgg11_sws"),
    # The same setting with the spiking ResNet-18 of scaled-WS convs (safjax.models.resnet18, norm="sws":
    # the NF-ResNet form OTTT trains online; all nine methods train it).
    "cifar10_resnet18": dict(_CIFAR, method="saf_e", dataset="cifar10", model="resnet18"),
    # CIFAR-100 with VGG-F (feedback 512→64 into layer 1).
    "cifar100_vggf": dict(_CIFAR, method="saf_e", dataset="cifar100", model="vgg_f"),
    # CIFAR10-DVS: 48×48 frames, T = 10, neuron dropout 0.1 with one mask per minibatch (docs/methods.md §1.7).
    "cifar10_dvs_vgg": dict(_CIFAR, method="saf_e", dataset="cifar10_dvs", model="vgg11_sws",
                            time_steps=10, augment=False, dropout=0.1),
    # DVS128-Gesture: T = 20, Adam 1e-3, batch 16.
    "dvs_gesture_vgg": dict(method="saf_e", dataset="dvs_gesture", model="vgg11_sws", time_steps=20,
                            batch_size=16, optimizer="adam", learning_rate=1e-3, epochs=300,
                            mse_weight=0.05, augment=False),
    # OTTT's ImageNet setting (its NF-ResNet-34: resnet34's default scaled-WS form, with the 7×7 stride-2
    # stem it takes for 224² inputs), trained online with SAF-E
    # (OTTT_O's gradient); --method=ottt_o or ottt_a trains it with OTTT itself.
    "imagenet_resnet34_online": dict(_IMAGENET, method="saf_e"),
    # SLTT's ImageNet setting: its BatchNorm ResNet-34, T = 6, SLTT.
    "imagenet_resnet34_sltt": dict(_IMAGENET, method="sltt", model="resnet34_bn"),
    # TL-BPTT on the embedded event digits (docs/methods.md §7): K = 2, blocks of 2 spiking layers.
    "digits_events_tlbptt": dict(method="tbptt", dataset="digits_events", model="event_conv",
                                 time_steps=8, truncation=2, block_size=2, epochs=10),
}


def resolve(preset_name: str, overrides: dict):
    """The `ExperimentConfig` of preset ``preset_name`` ('' = none) with ``overrides`` (the flags
    given explicitly: fields and method settings) applied on top. A preset's method settings are
    dropped when the chosen method does not take them; an explicit one is refused."""
    from safjax import experiment_config

    values = preset(preset_name) if preset_name else {}
    values.update(overrides)
    return experiment_config.from_flags(values, explicit=set(overrides))


def preset(name: str) -> dict:
    """The overrides of preset ``name``; a clear error listing the valid names otherwise."""
    if name not in PRESETS:
        raise ValueError(f"--config={name!r} is invalid: expected one of {', '.join(PRESETS)}.")
    return dict(PRESETS[name])
