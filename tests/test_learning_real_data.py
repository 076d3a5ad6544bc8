"""Every method learns real CIFAR-10 (docs/methods.md §8's VGG-11 preset at CPU scale).

Identities on small nets do not show that a method learns: SAF-F passed all of them and stayed
at 10 % on real CIFAR-10 (docs/results.md). Here each method trains the preset
``image_folder_vgg11`` — VGG-11 (sWS, ×2.74 scales), SGD 0.1 momentum 0.9, cosine, CE+MSE, crop /
flip / cutout, the preset's gradient clipping — narrowed by a width multiplier and shortened to
minutes on a 2-core CPU, on a fixed subset of the real CIFAR-10 JPEG copy. Each run must reduce
its loss, beat chance by a clear margin and raise no not-learning warning; SAF-F must stay within
a few points of OTTT_A (same gradient family, Theorem 2's SR) and SAF-E of OTTT_O (Theorem 1).
"""

from __future__ import annotations

import math

import pytest

from experiments import presets
from safjax import trainer
from safjax.datasets import image_folder

import real_cifar

pytestmark = pytest.mark.slow

TRAIN_PER_CLASS, TEST_PER_CLASS = 200, 100  # 2,000 train / 1,000 test images
SETTINGS = dict(width=0.25, time_steps=4, epochs=4, batch_size=32, num_devices=1, log_every=10_000)
EXTRA = {"tbptt": dict(truncation=2, block_size=4),  # windows of 2 steps, two local blocks
         "sltt_k": dict(backprop_steps=2)}  # the backward at 2 of the 4 steps
METHODS = ("bptt", "tbptt", "ottt_a", "ottt_o", "saf_e", "saf_f", "spike_rep", "sltt", "sltt_k")
CHANCE = 0.1
MIN_ACCURACY = 0.20  # twice chance; SAF-F unclipped here: 0.191
PAIR_TOLERANCE = 0.05  # SAF-F vs OTTT_A, SAF-E vs OTTT_O (1,000 test images: σ ≈ 1.5 points each)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return real_cifar.extract_subset(tmp_path_factory.mktemp("cifar"), TRAIN_PER_CLASS, TEST_PER_CLASS)


@pytest.fixture(scope="module")
def results(cifar_root, tmp_path_factory):
    """Each method's `train_and_evaluate` results, run once per module on first use."""
    cache, done = tmp_path_factory.mktemp("cache"), {}

    def run(method):
        if method not in done:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv(image_folder.CACHE_ENV, str(cache))
                config = presets.resolve("image_folder_vgg11", dict(
                    SETTINGS, method=method, dataset=f"image_folder:{cifar_root}", **EXTRA.get(method, {})))
                done[method] = trainer.train_and_evaluate(config)
        return done[method]

    return run


@pytest.mark.parametrize("method", METHODS)
def test_method_learns_real_cifar10(method, results):
    result = results(method)
    losses = result["train_loss_history"]
    assert losses[-1] < losses[0] and losses[-1] < math.log(10), losses
    assert result["test_accuracy"] >= MIN_ACCURACY, result["test_accuracy_history"]
    assert result["warnings"] == []


@pytest.mark.parametrize("method, partner", [("saf_f", "ottt_a"), ("saf_e", "ottt_o")])
def test_saf_keeps_its_partners_accuracy(method, partner, results):
    ours, theirs = results(method)["test_accuracy"], results(partner)["test_accuracy"]
    assert ours >= theirs - PAIR_TOLERANCE, (ours, theirs)
