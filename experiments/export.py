"""Export a trained run to NIR and measure what the export and one inference cost (docs/deploy.md).

    python -m experiments.train --method=bptt --neuron=lif --workdir=runs/digits  # (hard reset: see below)
    python -m experiments.export --workdir=runs/digits --output=model.nir

Reads the run's config.json and newest checkpoint; prints the inference conversion's accuracy
change (training-mode SAF forward → spiking LIF net), what was folded into the weights, the node
count, the exported graph's accuracy after reading it back, and the per-layer synaptic operations
and energy estimate. A soft-reset network (what SAF and OTTT train) has no exact NIR form:
``--reset=zero`` exports it with a reset to 0 and reports the accuracy it costs.
"""

import json
import sys

from absl import app, flags, logging

from safjax import nir as nir_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The training run's --workdir.", required=True)
flags.DEFINE_string("output", None, "Where the NIR file goes (HDF5, e.g. model.nir).", required=True)
flags.DEFINE_enum("reset", "refuse", list(nir_lib.RESETS), "Soft-reset networks: 'refuse' (exact exports only) "
                  "or 'zero' (approximate: reset to 0, accuracy change reported).")
flags.DEFINE_float("dt", nir_lib.DEFAULT_DT, "Step of NIR's continuous-time neurons (snnTorch assumes 1e-4).")
flags.DEFINE_enum("discretisation", "euler", list(nir_lib.DISCRETISATIONS),
                  "λ ↔ τ: 'euler' λ = 1 − dt/τ (snnTorch, Norse) or 'exact' λ = exp(−dt/τ).")
flags.DEFINE_bool("fold_scales", True, "Fold fixed scales and pooling's 1/w² into the weights (portable node "
                  "types); false keeps Scale/AvgPool2d nodes (bit-identical round trip).")
flags.DEFINE_integer("cross_check", -1, "Also run the exported graph in snnTorch (needs torch, snntorch, nirtorch) "
                     "on this many test examples (0 = all; -1 = no cross-check) and report the agreement.")
flags.DEFINE_string("report", "", "Also write the figures as JSON here.")


def main(argv):
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep orbax's INFO lines out of the report
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}; flags are written --name=value.")
    from safjax import deploy

    try:
        report = deploy.export_run(FLAGS.workdir, FLAGS.output, reset=FLAGS.reset, dt=FLAGS.dt,
                                   discretisation=FLAGS.discretisation, fold_scales=FLAGS.fold_scales,
                                   cross_check_examples=FLAGS.cross_check)
    except (ValueError, FileNotFoundError, ImportError) as error:
        sys.exit(f"error: {error}")
    if FLAGS.report:
        with open(FLAGS.report, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    app.run(main)
