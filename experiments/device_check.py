"""The GPU check of issue 13 as one prepared run (≤ 8 minutes on one H200): the benchmark in f32 and
bf16 at T = 6 with a profile of SAF-E, then a short real-data training in f32 and bf16.

    python -m experiments.device_check --data=/data/cifar10-jpeg --output=runs/device_check
    python -m experiments.device_check --tiny --output=/tmp/check   # CPU smoke test: digits, seconds

Writes ``<output>/benchmark_<precision>.json`` (the benchmark records and environment), the
profile traces under ``<output>/profile/``, ``<output>/train_<precision>/`` (the training runs) and
``<output>/summary.md``: step time and memory per method and precision with the ratios SAF-E /
OTTT_O and bf16 / f32, the top profile events, and accuracy and examples/s of the trainings.
"""

import json
import os
import sys
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "Where the tables, records and traces go.", required=True)
flags.DEFINE_string("data", "", "The CIFAR-10 image folder root for the training part ('' = skip it).")
flags.DEFINE_bool("tiny", False, "CPU smoke test: digits MLP, T = 2, batch 8, one repeat, training on digits.")
flags.DEFINE_string("methods", "saf_e,ottt_o,saf_f,ottt_a,bptt", "Benchmarked methods.")
flags.DEFINE_integer("epochs", 2, "Epochs of each training run (full size).")


def _benchmark(precision: str, tiny: bool, profile_dir: str | None) -> dict:
    from safjax import benchmark

    model, dataset, batch, steps, repeats = (("digits_mlp", "digits", 8, 2, 1) if tiny
                                             else ("vgg11_sws", "cifar10", 128, 6, 20))
    net, params = benchmark.build(model, dataset, precision=precision)
    methods = [m for m in FLAGS.methods.split(",") if m]
    print(f"benchmark {model} {dataset} batch {batch} T={steps} {precision}", flush=True)
    profiled = ["saf_e"] if profile_dir and "saf_e" in methods else None  # its timed repeats, traced
    records = benchmark.measure(methods, net, params, [steps], batch, repeats, log=lambda line: print(line, flush=True),
                                baseline="ottt_o" if "ottt_o" in methods else None,
                                profile_dir=profile_dir if profiled else None, profile_variants=profiled)
    return {"environment": benchmark.environment(), "model": model, "dataset": dataset, "precision": precision,
            "records": records}


def _train(precision: str, tiny: bool, workdir: str) -> dict:
    from experiments import presets
    from safjax import trainer

    if tiny:
        config = presets.resolve("", dict(precision=precision, epochs=1, num_devices=1, workdir=workdir))
    else:
        config = presets.resolve("image_folder_vgg11", dict(
            precision=precision, dataset=f"image_folder:{FLAGS.data}", epochs=FLAGS.epochs, workdir=workdir))
    return trainer.train_and_evaluate(config)


def _summary(benchmarks: dict, trainings: dict) -> str:
    lines = ["# Device check", ""]
    for precision, found in benchmarks.items():
        env = found["environment"]
        lines += [f"## Benchmark, {precision} ({found['model']}, {env['device_kind']}, jax {env['jax']})", "",
                  "| method | step ms | temp MiB | step / OTTT_O | temp / OTTT_O |", "|---|---:|---:|---:|---:|"]
        for r in found["records"]:
            lines.append(f"| {r['method']} | {r['step_time_ms']:.2f} | {r['temp_bytes'] / 2**20:.1f} | "
                         f"{r.get('step_time_ms_vs_ottt_o', float('nan')):.3f} | "
                         f"{r.get('temp_bytes_vs_ottt_o', float('nan')):.3f} |")
        lines.append("")
    if set(benchmarks) == {"f32", "bf16"}:
        f32 = {r["method"]: r for r in benchmarks["f32"]["records"]}
        lines += ["## bf16 / f32 step time", "", "| method | bf16 / f32 |", "|---|---:|"]
        lines += [f"| {r['method']} | {r['step_time_ms'] / f32[r['method']]['step_time_ms']:.3f} |"
                  for r in benchmarks["bf16"]["records"] if r["method"] in f32]
        lines.append("")
    for precision, found in benchmarks.items():
        profiled = [r for r in found["records"] if r.get("profile")]
        if profiled:
            from safjax import benchmark

            lines += [f"## Where SAF-E's step time goes ({precision})", "", benchmark.format_profile(profiled[0]["profile"]), ""]
    if trainings:
        lines += ["## Training", "", "| precision | test accuracy | examples / s | s / epoch |", "|---|---:|---:|---:|"]
        for precision, results in trainings.items():
            lines.append(f"| {precision} | {results['test_accuracy']:.4f} | {results['examples_per_second']:.0f} | "
                         f"{results['time_per_epoch_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}; flags are written --name=value.")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if not FLAGS.tiny and FLAGS.data and not os.path.isdir(os.path.join(FLAGS.data, "train")):
        sys.exit(f"error: --data={FLAGS.data!r} is not a CIFAR-10 image folder root (train/, test/).")
    os.makedirs(FLAGS.output, exist_ok=True)
    started, benchmarks, trainings = time.time(), {}, {}
    for precision in ("f32", "bf16"):
        benchmarks[precision] = _benchmark(precision, FLAGS.tiny, os.path.join(FLAGS.output, "profile", precision))
        with open(os.path.join(FLAGS.output, f"benchmark_{precision}.json"), "w") as f:
            json.dump(benchmarks[precision], f, indent=2)
        print(f"[{time.time() - started:.0f} s] benchmark {precision} done", flush=True)
    if FLAGS.tiny or FLAGS.data:
        for precision in ("f32", "bf16"):
            trainings[precision] = _train(precision, FLAGS.tiny, os.path.join(FLAGS.output, f"train_{precision}"))
            print(f"[{time.time() - started:.0f} s] training {precision} done", flush=True)
    with open(os.path.join(FLAGS.output, "summary.md"), "w") as f:
        f.write(_summary(benchmarks, trainings))
    print(f"summary: {os.path.join(FLAGS.output, 'summary.md')} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    app.run(main)
