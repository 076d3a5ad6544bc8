"""Train a spiking network with any safjax method. With no flags: SAF-E on the embedded digits.

    python -m experiments.train --method=bptt --time_steps=8
"""

import sys

from absl import app, flags

from safjax import train

_DEFAULTS = train.ExperimentConfig()
FLAGS = flags.FLAGS
flags.DEFINE_string("method", _DEFAULTS.method, "saf_e, saf_f, ottt_a, ottt_o, spike_rep, bptt or tbptt.")
flags.DEFINE_string("dataset", _DEFAULTS.dataset, "Data set (the embedded 'digits').")
flags.DEFINE_string("model", _DEFAULTS.model, "Model name.")
flags.DEFINE_integer("time_steps", _DEFAULTS.time_steps, "Time steps T per example.")
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Training epochs.")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Minibatch size.")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Adam learning rate.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed for initialisation and data order.")
flags.DEFINE_string("neuron", _DEFAULTS.neuron, "'lif' or 'if'.")
flags.DEFINE_float("leak", _DEFAULTS.leak, "LIF leak λ in (0, 1].")
flags.DEFINE_float("threshold", _DEFAULTS.threshold, "Firing threshold V_th > 0.")
flags.DEFINE_float("mse_weight", _DEFAULTS.mse_weight, "γ of the loss (1 − γ)·CE + γ·MSE.")
flags.DEFINE_integer("num_devices", _DEFAULTS.num_devices, "Devices for data parallelism (0 = all).")
flags.DEFINE_string("workdir", _DEFAULTS.workdir,
                    "If set: checkpoints (resumed on rerun), metrics.jsonl and results.json go here.")
flags.DEFINE_integer("checkpoint_every", _DEFAULTS.checkpoint_every, "Checkpoint every N minibatches (and at the end).")


def main(argv):
    del argv
    config = train.ExperimentConfig(**{f: FLAGS[f].value for f in train.ExperimentConfig.__dataclass_fields__})
    try:
        train.train_and_evaluate(config)
    except ValueError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    app.run(main)
