"""experiments.pipeline_throughput times the trainer's own host pipeline."""

import numpy as np

from experiments import pipeline_throughput
from safjax import input_pipeline


def test_random_images_go_through_the_trainers_pipeline_and_are_timed():
    dataset = pipeline_throughput.random_images(num_examples=256)
    inputs, labels = input_pipeline.make_batch(dataset, np.arange(8), augment=True, seed=0, epoch=0, step=0)
    assert inputs.shape == (8, 32, 32, 3) and inputs.dtype == np.float32 and labels.shape == (8,)
    assert abs(float(inputs.mean())) < 1.0  # normalised with CIFAR-10's statistics, not raw 0..255
    for augment in (False, True):
        rate = pipeline_throughput.images_per_second(dataset, batch_size=32, steps=3, augment=augment)
        assert np.isfinite(rate) and rate > 0
