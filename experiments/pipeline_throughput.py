"""How many training images a second the host input pipeline produces, per number of data workers.

    python -m experiments.pipeline_throughput --dataset=random --data_workers=0,1,2
    python -m experiments.pipeline_throughput --dataset=jpeg:224 --image_size=224 --data_workers=0,1,2

Runs the trainer's own pipeline (`safjax.data_loader.train_batches`: read or decode, augment,
normalise, in ``--data_workers`` grain worker processes or, for 0, in threads of this process)
over ``--steps`` minibatches (`data_loader.images_per_second`), with and without augmentation, and
prints images/s and the wait for the first minibatch (worker start-up) for each worker count.
The device is not involved: compare the figure with a method's examples/s on the accelerator to
see whether the pipeline can keep up.

``--dataset=random``: 50,000 CIFAR-10-shaped random uint8 images held in memory.
``--dataset=jpeg:S``: ``--jpeg_images`` smooth-noise S×S JPEGs written to a temporary folder
(deleted at the end, with their statistics cache) and streamed like any ``image_folder:``; with ``--image_size`` the ImageNet
recipe (random-resized crop / centre crop), else the CIFAR recipe at their stored size.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
from absl import app, flags

from experiments import synthetic_jpegs

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "random", "A registered data set or image_folder:<root> (as --dataset of "
                    "experiments.train), 'random' (CIFAR-shaped, in memory) or 'jpeg:S' (generated S×S JPEGs).")
flags.DEFINE_string("data_dir", "", "tfds data directory, for tfds data sets.")
flags.DEFINE_integer("batch_size", 128, "Minibatch size (global; one process).", lower_bound=1)
flags.DEFINE_integer("steps", 100, "Minibatches timed, after one untimed.", lower_bound=1)
flags.DEFINE_string("data_workers", "0", "Comma list of worker-process counts to time (0 = threads).")
flags.DEFINE_integer("image_size", 0, "As experiments.train's --image_size (0: images at their stored size).",
                     lower_bound=0)
flags.DEFINE_integer("jpeg_images", 2000, "Images of --dataset=jpeg:S.", lower_bound=2)


def random_images(num_examples: int = 50_000, seed: int = 0):
    """A CIFAR-10-shaped data set of random uint8 images, augmented and normalised like CIFAR-10."""
    from safjax.datasets.base import Dataset

    rng = np.random.default_rng(seed)
    return Dataset("random", rng.integers(0, 256, (num_examples, 32, 32, 3), dtype=np.uint8),
                   rng.integers(0, 10, num_examples).astype(np.int32), 10,
                   mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), augment=True)


def _load(name: str, folder: str):
    from safjax import datasets
    from safjax.datasets import image_folder

    if name == "random":
        return random_images()
    if name.startswith("jpeg:"):
        size = int(name.split(":", 1)[1])
        print(f"writing {FLAGS.jpeg_images} {size}×{size} JPEGs to {folder} …", flush=True)
        synthetic_jpegs.write_jpegs(folder, FLAGS.jpeg_images, size)
        os.environ[image_folder.CACHE_ENV] = os.path.join(folder, "cache")  # nothing left in the user's cache
        name = f"image_folder:{folder}"
    return datasets.load(name, "train", data_dir=FLAGS.data_dir or None, image_size=FLAGS.image_size)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}; flags are written --name=value.")
    from safjax import data_loader

    try:
        counts = [int(w) for w in FLAGS.data_workers.split(",")]
    except ValueError:
        sys.exit(f"error: --data_workers={FLAGS.data_workers!r} is invalid: expected a comma list of integers ≥ -1 "
                 "(-1 = automatic).")
    with tempfile.TemporaryDirectory(prefix="safjax-jpegs-") as folder:
        try:
            dataset = _load(FLAGS.dataset, folder)
        except ValueError as error:
            sys.exit(f"error: {error}")
        if dataset.temporal:
            sys.exit(f"error: --dataset={FLAGS.dataset} holds event frames, which the pipeline passes through "
                     "unaugmented; time a static image data set.")
        print(f"{FLAGS.dataset}: {len(dataset)} training images → {dataset.input_shape} per example, batch "
              f"{FLAGS.batch_size}, {FLAGS.steps} minibatches timed, {os.cpu_count()} CPU cores")
        for workers in counts:
            for augment in (False, True):
                rate, first = data_loader.images_per_second(dataset, FLAGS.batch_size, FLAGS.steps, augment,
                                                            data_loader.resolve_workers(workers, dataset))
                label = ("read + augment + normalise" if augment else "read + normalise")
                print(f"  data_workers={workers}  {label:<28} {rate:>10,.0f} images/s   first minibatch "
                      f"after {first:5.2f} s")


if __name__ == "__main__":
    app.run(main)
