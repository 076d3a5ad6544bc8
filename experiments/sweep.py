"""Run a grid of `experiments.train` runs, resumably, and summarise them over seeds.

    python -m experiments.sweep --grid="method=saf_e,ottt_o;time_steps=2,4;seed=0,1" \\
        --workdir=runs/sweep --parallel=1 -- --epochs=2

Everything after `--` goes to every run (flags of `experiments.train`, written --name=value). Each
cell runs in `<workdir>/<key=value,…>` with its output in `log.txt` there; rerunning the command
skips finished cells and resumes interrupted ones. The summary goes to `<workdir>/summary.md`,
`summary.csv` and `sweep.png`; `--summarize_only` rebuilds it from the results on disk.
"""

import sys

import jax
from absl import app, flags

from safjax import sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("grid", "", "'key=v1,v2;key=v1,…' over experiments.train flags, e.g. "
                    "'method=saf_e,ottt_o;time_steps=2,4;seed=0,1'.")
flags.DEFINE_string("workdir", None, "The sweep's directory (one subdirectory per cell).", required=True)
flags.DEFINE_integer("parallel", 1, "Cells run at once. With > 1 and GPUs, each gets one GPU (round robin).")
flags.DEFINE_string("gpus", "auto", "GPU ids to share out with --parallel > 1: 'auto' "
                    "(CUDA_VISIBLE_DEVICES, else nvidia-smi), 'none', or e.g. '0,1,2,3'.")
flags.DEFINE_bool("summarize_only", False, "Only rebuild summary.md / .csv / sweep.png from existing results.")


def main(argv):
    base_flags = argv[1:]
    # This process only plans, validates and summarises; the cells get the accelerators. CPU only
    # here keeps it from taking accelerator memory (and JAX from logging its failed TPU probe);
    # a config setting, not JAX_PLATFORMS, so the cells do not inherit it.
    jax.config.update("jax_platforms", "cpu")
    try:
        if FLAGS.summarize_only:
            if FLAGS.grid or base_flags:
                raise ValueError("--summarize_only reads the grid from sweep.json: drop --grid and base flags.")
            sweep.summarize_only(FLAGS.workdir)
            return
        gpus = {"auto": None, "none": []}.get(FLAGS.gpus, [g for g in FLAGS.gpus.split(",") if g])
        outcome = sweep.run_sweep(FLAGS.grid, FLAGS.workdir, base_flags, FLAGS.parallel, gpus)
    except ValueError as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        sys.exit(130)  # run_sweep has said how to resume; the cells got the same Ctrl-C
    if outcome.failures:
        sys.exit(f"{len(outcome.failures)} of {outcome.num_cells} cells failed: "
                 + ", ".join(f.cell for f in outcome.failures))


if __name__ == "__main__":
    app.run(main)
