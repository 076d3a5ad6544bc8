"""Train every method on real CIFAR-10 with the paper's VGG-11 preset and write one table.

    tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /data
    python -m experiments.reproduce --data=/data/cifar10-jpeg --workdir=runs/reproduce --epochs=5

Each method runs `experiments.train --config=image_folder_vgg11 --dataset=image_folder:<data>
--epochs=N` in `<workdir>/method=<spec>` (rerunning resumes); the table goes to
`<workdir>/results.md`. Everything after `--` goes to every run (e.g. `-- --width=0.125
--time_steps=2 --train_examples=2000` for a CPU-sized check). Time: on one H200, ≈ 8 s per epoch
per method at T = 6 (docs/results.md), so `--epochs=5` over the nine methods ≈ 7 minutes plus
compilation (estimated; SLTT's per-epoch time on a GPU is not measured yet).
"""

import sys

from absl import app, flags

from safjax import reproduce

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "The CIFAR-10 image folder root (train/<class>/, test/<class>/).", required=True)
flags.DEFINE_string("workdir", None, "Where the runs and results.md go.", required=True)
flags.DEFINE_integer("epochs", 5, "Epochs per method (the cosine schedule spans them).")
flags.DEFINE_string("methods", "", "Comma-separated method specs, name or name:setting=value[:…] ('' = every "
                    "registered method, with reproduce.DEFAULT_SPECS: tbptt truncation=2 block_size=4, sltt_k "
                    "backprop_steps=2).")
flags.DEFINE_integer("parallel", 1, "Methods run at once (with > 1 GPUs: one GPU each).")


def main(argv):
    try:
        table, outcome = reproduce.reproduce(FLAGS.data, FLAGS.workdir, FLAGS.epochs,
                                             reproduce.method_list(FLAGS.methods), argv[1:], FLAGS.parallel)
    except ValueError as error:
        sys.exit(f"error: {error}")
    print(table)
    if outcome.failures:
        sys.exit(f"{len(outcome.failures)} method(s) failed: " + ", ".join(f.cell for f in outcome.failures))


if __name__ == "__main__":
    app.run(main)
