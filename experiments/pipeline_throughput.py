"""How many training images a second the host input pipeline produces, on one thread.

    python -m experiments.pipeline_throughput --dataset=image_folder:/data/cifar10-jpeg --batch_size=128

Runs `safjax.input_pipeline.minibatches` (gather, `augment.standard`'s crop / flip / cutout,
scaling and normalisation: what the trainer's prefetch thread runs) over ``--steps`` minibatches
(`input_pipeline.images_per_second`),
with and without augmentation, and prints images/s for each. The device is not involved: compare
the figure with a method's examples/s on the accelerator to see whether the pipeline can keep up.
``--dataset=random`` times CIFAR-10-shaped random uint8 images (no data needed).
"""

from __future__ import annotations

import sys

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "random", "A registered data set (as --dataset of experiments.train), or "
                    "'random': 50,000 random 32×32×3 uint8 images with CIFAR-10's statistics.")
flags.DEFINE_string("data_dir", "", "tfds data directory, for tfds data sets.")
flags.DEFINE_integer("batch_size", 128, "Minibatch size (global; one process).", lower_bound=1)
flags.DEFINE_integer("steps", 100, "Minibatches timed, after one untimed.", lower_bound=1)


def random_images(num_examples: int = 50_000, seed: int = 0):
    """A CIFAR-10-shaped data set of random uint8 images, augmented and normalised like CIFAR-10."""
    from safjax.datasets.base import Dataset

    rng = np.random.default_rng(seed)
    return Dataset("random", rng.integers(0, 256, (num_examples, 32, 32, 3), dtype=np.uint8),
                   rng.integers(0, 10, num_examples).astype(np.int32), 10,
                   mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), augment=True)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}; flags are written --name=value.")
    from safjax import datasets, input_pipeline

    if FLAGS.dataset == "random":
        dataset = random_images()
    else:
        try:
            dataset = datasets.load(FLAGS.dataset, "train", data_dir=FLAGS.data_dir or None)
        except ValueError as error:
            sys.exit(f"error: {error}")
    if dataset.temporal:
        sys.exit(f"error: --dataset={FLAGS.dataset} holds event frames, which the pipeline passes through "
                 "unaugmented; time a static image data set.")
    print(f"{FLAGS.dataset}: {len(dataset)} training images {dataset.inputs.shape[1:]} {dataset.inputs.dtype}, "
          f"batch {FLAGS.batch_size}, {FLAGS.steps} minibatches, one thread")
    for augment in (False, True):
        rate = input_pipeline.images_per_second(dataset, FLAGS.batch_size, FLAGS.steps, augment)
        label = "gather + augment + normalise" if augment else "gather + normalise"
        print(f"  {label:<30} {rate:>10,.0f} images/s")


if __name__ == "__main__":
    app.run(main)
