"""Inference conversion (docs/methods.md §4): SAF/OTTT-trained parameters run unchanged in a plain
LIF SNN."""

import numpy as np
import optax
import pytest

import safjax

import reference_nets
from budget import first_fast


@pytest.mark.parametrize("architecture", first_fast(reference_nets.ARCHITECTURES))
@pytest.mark.parametrize("method", ["saf_e", "ottt_o"])
def test_trained_parameters_give_identical_outputs_in_the_lif_network(architecture, method):
    net = reference_nets.build(architecture, 0.9)
    params, inputs, labels = reference_nets.params_and_data(net, 4)
    optimizer = optax.sgd(0.05)
    step = safjax.make_train_step(method, net, optimizer)
    params, _, _ = step(params, optimizer.init(params), inputs, labels)
    report = safjax.inference.compare(net, params, inputs, labels)
    assert report["max_abs_output_difference"] < 1e-9
    assert report["prediction_agreement"] == 1.0
    assert report["training_mode_accuracy"] == report["inference_accuracy"]
    lif = safjax.inference.lif_outputs(net, params, inputs)
    assert lif.shape == (4, reference_nets.BATCH, reference_nets.NUM_CLASSES)
    assert np.abs(lif).max() > 0
