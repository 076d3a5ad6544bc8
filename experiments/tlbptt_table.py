"""The TL-BPTT design-space table (K × B) of a finished sweep, paper-style: accuracy and, relative
to BPTT (K = T, one block), compiled training memory, analytic memory accesses and MACs.

    python -m experiments.sweep --grid="truncation=8,4,2,1;block_size=4,2,1" --workdir=runs/kb \\
        -- --config=digits_events_tlbptt --epochs=5
    python -m experiments.tlbptt_table --sweep_dir=runs/kb --output=docs/data/tlbptt_kb.md \\
        --plot=docs/tlbptt_kb.png

BPTT is the cell with K = T and B ≥ the network's spiking layers. Memory is XLA's compiled temp
bytes of the training step (per device, deterministic); accesses, MACs and stored activations
come from `safjax.costs.tlbptt_costs` (formulas in docs/tlbptt_costs.md).
"""

import glob
import json
import os
import sys

from absl import app, flags
from flax import nnx

from safjax import costs, datasets, models

FLAGS = flags.FLAGS
flags.DEFINE_string("sweep_dir", None, "A finished `experiments.sweep` directory.", required=True)
flags.DEFINE_string("output", "", "Write the Markdown table here (also printed).")
flags.DEFINE_string("plot", "", "Write a figure (accuracy and memory against K, one line per B) here.")


def _rows(sweep_dir: str) -> list[dict]:
    rows, nets = [], {}
    for path in sorted(glob.glob(os.path.join(sweep_dir, "*", "results.json"))):
        with open(path) as f:
            r = json.load(f)
        key = (r["model"], r["dataset"], r["time_steps"])
        if key not in nets:
            train = datasets.load(r["dataset"], "test", time_steps=r["time_steps"])
            nets[key] = models.MODELS[r["model"]](nnx.Rngs(0), num_classes=train.num_classes,
                                                  input_shape=train.input_shape).network
        net = nets[key]
        window = min(r["truncation"] or r["time_steps"], r["time_steps"])
        blocks = min(r["block_size"] or len(net.layers), len(net.layers))
        analytic = costs.tlbptt_costs(net, r["time_steps"], window, blocks, r["batch_size"])
        rows.append({"K": window, "B": blocks, "T": r["time_steps"], "layers": len(net.layers),
                     "accuracy": r["test_accuracy"], "seed": r["seed"],
                     "temp_bytes": r["compiled_memory"]["temp_bytes"],
                     "time_per_epoch_s": r.get("time_per_epoch_s"),
                     **{f"{k}_vs_bptt": v for k, v in analytic["relative"].items()}})
    if not rows:
        raise ValueError(f"no results.json under {sweep_dir}/*/: run the sweep first.")
    return rows


def table(rows: list[dict]) -> str:
    bptt = [r for r in rows if r["K"] == r["T"] and r["B"] == r["layers"]]
    if not bptt:
        raise ValueError("the sweep has no BPTT cell (K = T, B ≥ layers) to compare against.")
    base = bptt[0]
    lines = ["| K | B | test accuracy | Δ accuracy vs BPTT | compiled memory MB | memory vs BPTT | "
             "memory accesses vs BPTT | MACs vs BPTT | stored activations vs BPTT | s / epoch |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (-r["K"], -r["B"])):
        lines.append(
            f"| {r['K']} | {r['B']} | {r['accuracy']:.4f} | {100 * (r['accuracy'] - base['accuracy']):+.2f} % | "
            f"{r['temp_bytes'] / 1e6:.1f} | {r['temp_bytes'] / base['temp_bytes']:.3f} | "
            f"{r['memory_accesses_vs_bptt']:.3f} | {r['macs_vs_bptt']:.3f} | "
            f"{r['activation_bytes_vs_bptt']:.3f} | {r['time_per_epoch_s']:.1f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    from safjax import plots

    base = next(r for r in rows if r["K"] == r["T"] and r["B"] == r["layers"])
    plots.curves_by_group(rows, path, group="B", x="K", xlabel="truncation K", label="B = {}", panels=[
        (lambda r: r["accuracy"], "test accuracy", "accuracy"),
        (lambda r: r["temp_bytes"] / base["temp_bytes"], "compiled memory / BPTT", "training memory vs BPTT"),
    ])


def main(argv):
    del argv
    try:
        rows = _rows(FLAGS.sweep_dir)
        text = table(rows)
    except ValueError as error:
        sys.exit(f"error: {error}")
    print(text)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(text + "\n")
    if FLAGS.plot:
        plot(rows, FLAGS.plot)


if __name__ == "__main__":
    app.run(main)
