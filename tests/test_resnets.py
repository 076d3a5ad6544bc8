"""The spiking ResNets of `safjax.models` (plain Flax models stepping one time step): their shapes and
sizes, the strided convs, every cell firing at init, one training step of every method on the
scaled-WS form, the BatchNorm form (SLTT trains it, SAF refuses it), the preset, and (slow) learning
on real CIFAR-10 (measured test accuracies, 500 images, chance 0.10: saf_e 0.170, ottt_o 0.214,
bptt 0.234, sltt 0.214, saf_f 0.224, ottt_a 0.240, spike_rep 0.232)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import safjax
from safjax import models
from safjax.datasets import tfds_images
from safjax.engine import flax_model
from budget import first_fast

FAST_METHODS = ["saf_e", "ottt_o", "bptt", "sltt"]
# With their default settings tbptt is bptt and sltt_k is sltt (same updates, same learning run), so the
# slow one-step test gives them settings of their own and the learning test leaves them out.
SLOW_METHODS = [("saf_f", {}), ("ottt_a", {}), ("spike_rep", {}), ("tbptt", dict(truncation=1)),
                ("sltt_k", dict(backprop_steps=1))]
LEARNING_METHODS = FAST_METHODS + ["saf_f", "ottt_a", "spike_rep"]
# The CIFAR ResNets (3×3 stem, no max pool, 10 classes; e.g. kuangliu/pytorch-cifar's) have 11,173,962
# and 21,282,122 parameters; a scaled-WS conv's bias and gain count as a BatchNorm's shift and scale.
PUBLISHED_PARAMS = {"resnet18": 11_173_962, "resnet34": 21_282_122}


def _num_params(module) -> int:
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(nnx.state(module, nnx.Param)))


def _cifar_like(key, time_steps, batch):
    """Uniform [0, 1] pixels, normalised per channel with CIFAR-10's mean and std as the input
    pipeline normalises the real images, repeated over T (direct encoding): [T, B, 32, 32, 3]."""
    pixels = jax.random.uniform(key, (batch, 32, 32, 3))
    images = (pixels - jnp.asarray(tfds_images.CIFAR10_MEAN)) / jnp.asarray(tfds_images.CIFAR10_STD)
    return jnp.broadcast_to(images, (time_steps,) + images.shape).astype(jnp.float32)


@pytest.mark.parametrize("name", first_fast(["resnet18", "resnet34"]))
@pytest.mark.parametrize("norm", first_fast(["sws", "batchnorm"]))
def test_parameter_counts_match_the_published_cifar_resnets(name, norm):
    assert _num_params(models.MODELS[name](nnx.Rngs(0), norm=norm)) == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("stem, input_shape, first, stage1", [
    ("cifar", (32, 32, 3), (32, 32, 16), 32),
    ("imagenet", (64, 64, 2), (32, 32, 16), 16),  # 7×7 stride 2, a cell, then the 2×2 average pool
])
@pytest.mark.slow
def test_shapes_of_cells_and_output(stem, input_shape, first, stage1):
    model = models.resnet18(nnx.Rngs(0), num_classes=7, input_shape=input_shape, width=0.25, stem=stem)
    shaped = flax_model.FlaxModel(model).with_input(input_shape, jnp.float32)
    assert len(shaped.cell_shapes) == 1 + 2 * 8 and shaped.num_classes == 7
    by_name = dict(zip(shaped.cell_names, shaped.cell_shapes))
    assert by_name["'lif_stem'"] == first
    for block, (size, channels) in enumerate([(stage1, 16)] * 2 + [(stage1 // 2, 32)] * 2 + [(stage1 // 4, 64)] * 2
                                             + [(stage1 // 8, 128)] * 2):  # stages 2-4 halve H, W in their first conv
        for cell in ("lif1", "lif2"):
            assert by_name[f"'blocks.{block}.{cell}'"] == (size, size, channels), (block, cell)
    assert model(jnp.zeros((5,) + input_shape)).shape == (5, 7)


def test_factories_follow_the_registry_signature_and_refuse_bad_settings():
    model = models.MODELS["resnet34"](nnx.Rngs(0), "lif", 0.9, 0.5, 10, (32, 32, 3), width=0.125, dropout=0.1,
                                      reset="soft")
    assert len(model.blocks) == 3 + 4 + 6 + 3
    assert model.blocks[0].lif1.config.leak == 0.9 and model.blocks[0].lif1.config.threshold == 0.5
    assert isinstance(model.blocks[5].dropout, nnx.Dropout) and model.blocks[5].dropout.rate == 0.1
    assert models.resnet18(nnx.Rngs(0), width=0.125).blocks[0].dropout is None
    for kwargs, message in [(dict(norm="layernorm"), "`norm` must be one of 'sws', 'batchnorm'"),
                            (dict(stem="tiny"), "`stem` must be one of 'cifar', 'imagenet'"),
                            (dict(dropout=1.0), r"`dropout` must be a rate in \[0, 1\)"),
                            (dict(input_shape=(64,)), r"`input_shape` must be \(H, W, C\)")]:
        with pytest.raises(ValueError, match=message):
            models.resnet18(nnx.Rngs(0), width=0.125, **kwargs)


@pytest.mark.parametrize("kernel_size", [1, 3, 7])
@pytest.mark.parametrize("subsample", [True, False])
def test_strided_conv_is_the_stride_2_conv_padded_by_half_the_kernel(kernel_size, subsample):
    """Both ways of computing a stride-2 conv (the CPU's subsampled stride-1 conv, the padded 'VALID' one)
    equal lax's stride-2 conv with padding k//2 on each side (output i centred on input 2i)."""
    conv = safjax.nn.ScaledWSConv(3, 5, kernel_size, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 10, 10, 3), jnp.float32)
    pad = kernel_size // 2
    expected = jax.lax.conv_general_dilated(x, conv.op.weight(conv.params()), (2, 2), ((pad, pad), (pad, pad)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv.bias.get_value()
    got = models.strided_conv(conv, x, 2, subsample=subsample)
    assert got.shape == (2, 5, 5, 5)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
@pytest.mark.slow
def test_every_cell_fires_at_init(name):
    """At init, on CIFAR-like inputs (T = 4), every cell fires at a reasonable rate: the NF-ResNet scaling
    (scaled-WS convs, ×2.74 after each cell, residual branch ×0.2) keeps signals alive at depth without
    saturating them (measured 15–30 %; with the branch ×1 the identity blocks of ResNet-34 climb to ~75 %)."""
    model = models.MODELS[name](nnx.Rngs(0), width=0.125)
    shaped = flax_model.FlaxModel(model).with_input((32, 32, 3), jnp.float32)
    _, spikes = safjax.simulate.run(shaped, nnx.state(model, nnx.Param), _cifar_like(jax.random.key(1), 4, 8))
    rates = {cell: float(jnp.mean(s)) for cell, s in zip(shaped.cell_names, spikes)}
    assert all(0.01 < rate < 0.99 for rate in rates.values()), rates
    assert max(rates.values()) < 0.5, rates  # flat with depth, not climbing block after block


@pytest.mark.slow
def test_the_batchnorm_form_steps_by_hand_trains_with_sltt_and_is_refused_by_saf_in_one_line():
    model = models.resnet18(nnx.Rngs(0), width=0.0625, norm="batchnorm")
    inputs = _cifar_like(jax.random.key(1), 2, 4)
    outputs = [model(x_t) for x_t in inputs]
    assert outputs[-1].shape == (4, 10) and np.all(np.isfinite(outputs[-1]))
    safjax.nn.reset(model)
    with pytest.raises(ValueError) as refusal:
        safjax.make_train_step("saf_e", model, optax.sgd(0.1))
    assert "\n" not in str(refusal.value)
    assert str(refusal.value).startswith("saf_e needs maps between neuron cells that are affine in the cells' "
                                         "signals, but SpikingResNet has a BatchNorm that normalises by the "
                                         "current minibatch's statistics")
    before = model.blocks[3].bn2.mean.get_value()
    _one_step("sltt", model)
    assert float(jnp.max(jnp.abs(model.blocks[3].bn2.mean.get_value() - before))) > 0  # running statistics carried


def test_the_cifar10_resnet18_preset_is_the_ottt_setting_with_the_sws_resnet18():
    from experiments import presets

    config = presets.resolve("cifar10_resnet18", {})
    config.validate()
    assert (config.dataset, config.model, config.time_steps, config.optimizer) == ("cifar10", "resnet18", 6, "sgd")
    assert (config.learning_rate, config.momentum, config.schedule, config.augment) == (0.1, 0.9, "cosine", True)
    assert models.MODELS[config.model_name] is models.resnet18


def _one_step(method, model=None, **settings):
    model = model or models.resnet18(nnx.Rngs(0), width=0.0625)
    optimizer = optax.sgd(0.1)
    params = nnx.state(model, nnx.Param)
    step = safjax.make_train_step(safjax.get_method(method, **settings), model, optimizer)
    inputs, labels = _cifar_like(jax.random.key(1), 2, 2), jnp.array([3, 7])
    new_params, _, metrics = step(params, optimizer.init(params), inputs, labels, jax.random.key(2))
    assert np.isfinite(float(metrics.loss)) and len(metrics.firing_rates) == 17
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                zip(jax.tree_util.tree_leaves(new_params), jax.tree_util.tree_leaves(params)))
    assert moved > 0


@pytest.mark.parametrize("method", FAST_METHODS)
@pytest.mark.slow
def test_every_method_takes_a_step_on_the_sws_resnet18(method):
    _one_step(method)


@pytest.mark.slow
@pytest.mark.parametrize("method, settings", SLOW_METHODS)
def test_every_other_method_takes_a_step_on_the_sws_resnet18(method, settings):
    _one_step(method, **settings)


# Learning at CPU scale: ResNet-18 (sWS) at width 1/8 (8…64 channels), T = 2, Adam with a cosine decay,
# 2 epochs of 1,000 real CIFAR-10 training images (the first 100 of each class), tested on 500.
TRAIN_PER_CLASS, TEST_PER_CLASS = 100, 50
LEARNING = dict(width=0.125, time_steps=2, batch_size=32, epochs=2, learning_rate=1e-2)
MIN_ACCURACY = 0.15  # chance is 0.10; 500 test images: σ ≈ 1.3 points at chance


@pytest.fixture(scope="module")
def cifar_subset(tmp_path_factory):
    """(train, test) `Dataset` s of the real CIFAR-10 subset, normalised as the trainer normalises."""
    import real_cifar
    from safjax.datasets import image_folder

    root = real_cifar.extract_subset(tmp_path_factory.mktemp("cifar"), TRAIN_PER_CLASS, TEST_PER_CLASS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(image_folder.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        return image_folder.load(root, "train"), image_folder.load(root, "test")


def _train_and_test(method, train, test, width, time_steps, batch_size, epochs, learning_rate):
    """(mean loss of the first epoch, of the last, test accuracy) of ResNet-18 trained by ``method``."""
    from safjax import input_pipeline

    model = models.resnet18(nnx.Rngs(0), width=width)
    steps = len(train) // batch_size
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, epochs * steps))
    params = nnx.state(model, nnx.Param)
    opt_state = optimizer.init(params)
    step = safjax.make_train_step(method, model, optimizer)
    losses = []
    for epoch in range(epochs):
        order = input_pipeline.epoch_order(0, epoch, len(train))
        for i in range(steps):
            images, labels = input_pipeline.make_batch(train, order[i * batch_size:(i + 1) * batch_size],
                                                       augment=False, seed=0, epoch=epoch, step=i)
            inputs = jnp.broadcast_to(images, (time_steps,) + images.shape)
            params, opt_state, metrics = step(params, opt_state, inputs, jnp.asarray(labels),
                                              jax.random.key(epoch * steps + i))
            losses.append(float(metrics.loss))
    images, labels = input_pipeline.make_batch(test, np.arange(len(test)), augment=False, seed=0, epoch=0, step=0)
    shaped = flax_model.FlaxModel(model).with_input(images.shape[1:], jnp.float32)
    outputs, _ = jax.jit(safjax.simulate.run, static_argnums=0)(
        shaped, params, jnp.broadcast_to(images, (time_steps,) + images.shape))
    accuracy = float(jnp.mean(jnp.argmax(outputs.sum(0), -1) == jnp.asarray(labels)))
    return float(np.mean(losses[:steps])), float(np.mean(losses[-steps:])), accuracy


@pytest.mark.slow
@pytest.mark.parametrize("method", LEARNING_METHODS)
def test_each_method_learns_real_cifar10_with_the_sws_resnet18(method, cifar_subset):
    first, last, accuracy = _train_and_test(method, *cifar_subset, **LEARNING)
    assert np.isfinite(last) and last < first, (first, last)
    assert accuracy >= MIN_ACCURACY, (accuracy, first, last)
