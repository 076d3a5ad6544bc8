"""Benchmark one training minibatch of each method across time steps.

    python -m experiments.benchmark --model=digits_mlp --time_steps=2,4,8,16,32
    python -m experiments.benchmark --model=vgg11_sws --dataset=cifar10 --batch_size=128 --time_steps=6

Per method × T it records temp/argument/output bytes (XLA memory_analysis); flops of the
training step and forward_flops of the forward alone (dense/conv FLOPs counted on the traced
program, scan bodies × their length — XLA's cost_analysis counts a loop body once, and is kept
as xla_flops_loop_body_once); synaptic_ops_per_step
(evaluations per weighted operator per step, counted in the traced program), step_time_ms
(median over --repeats, methods interleaved; min/max too), step_cpu_time_ms (the process's CPU time
per step, all threads, median: on a machine shared with other processes it moves less than the wall
time) and compile_time_s, plus the device and versions. A method is a registered name or a spec with settings, ``name:setting=value``:
`bptt:remat=true` is BPTT with jax.checkpoint, the strong baseline. `--truncation` and
`--block_size` reach every method that takes them (tbptt, TL-BPTT, docs/methods.md §7); methods with
a cost model (BPTT, TBPTT) also carry the analytic MACs, memory accesses and stored activation bytes
of docs/tlbptt_costs.md, and every record its ratios to `--baseline` at the same T
(`*_vs_<baseline>`).

`--memory_only` compiles each step and records its memory, FLOPs and counts without running it (no
step times): for a model too large to step on this machine, e.g. the per-device memory of
ImageNet ResNet-34 in docs/scaling.md:

    python -m experiments.benchmark --memory_only --model=resnet34 --stem=imagenet \\
        --dataset=imagenet2012 --time_steps=6 --batch_size=32 --methods=saf_e,bptt
"""

import json
import sys

from absl import app, flags

from experiments import method_flags
from safjax import benchmark

FLAGS = flags.FLAGS
flags.DEFINE_string("methods", ",".join([*benchmark.methods.METHODS, "bptt:remat=true"]),
                    "Comma list of methods: registered names or name:setting=value[:setting=value] specs.")
flags.DEFINE_string("baseline", "bptt", "The method spec whose records the others are divided by ('' = no ratios).")
flags.DEFINE_string("time_steps", "2,4,8,16,32", "Comma list of T.")
flags.DEFINE_string("model", "digits_mlp", f"Model: {', '.join(benchmark.models.MODELS)} (vgg11_sws_flax: "
                    "vgg11_sws written as a plain Flax model, trained through the engine's Flax front-end).")
flags.DEFINE_float("width", 1.0, "Multiplies the model's channel counts (1: the registered model).")
flags.DEFINE_enum("stem", None, ["cifar", "imagenet"], "A ResNet's stem (resnet18, resnet34): cifar (3×3 conv) "
                  "or imagenet (7×7 stride-2 conv and 2×2 average pool); unset: the model's default (imagenet for "
                  "inputs of 128 px or more a side).")
flags.DEFINE_string("dataset", "digits", f"Sets input shape and classes: {', '.join(benchmark.DATASET_SHAPES)}.")
flags.DEFINE_integer("batch_size", 32, "Minibatch size.")
flags.DEFINE_integer("repeats", 5, "Timed repeats per method (after one warm-up).")
flags.DEFINE_string("unroll", "1", "lax.scan unroll factor of the time loop (0 = fully unrolled, as in "
                    "experiments.train; 'true' is accepted for 0).")
flags.DEFINE_enum("precision", "f32", ["f32", "bf16"], "Synaptic operators in f32 or bf16 (f32 accumulation).")
flags.DEFINE_string("conv_weight_grad", "auto", "Conv weight gradient: auto (swapped on CPU), swapped, plain.")
_SETTINGS = method_flags.define(" Reaches every benchmarked method that takes it.")  # as in experiments.train
flags.adopt_module_key_flags(method_flags)  # listed by --help with this binary's own flags
flags.DEFINE_string("plot", "", "If set, write memory-vs-T and time-vs-T figures to this PNG.")
flags.DEFINE_string("profile", "", "If set, trace each method's repeats with jax.profiler into this directory "
                    "(<dir>/<method>/, for TensorBoard or Perfetto) and print its top events by time.")
flags.DEFINE_string("output", "", "Write the records and environment as JSON here.")
flags.DEFINE_bool("memory_only", False, "Compile each method's step and report its memory (and FLOPs) without "
                  "running it: no step times, --repeats, --plot or --profile.")


def _parse() -> tuple[list[str], list[int], int | bool]:
    names = [m for m in FLAGS.methods.split(",") if m]
    for name in names:
        try:
            benchmark.parse_variant(name)
        except ValueError as error:
            raise ValueError(f"--methods: {error}") from None
    try:
        steps = [int(t) for t in FLAGS.time_steps.split(",")]
    except ValueError:
        raise ValueError(f"--time_steps must be a comma list of integers ≥ 1, got {FLAGS.time_steps!r}.")
    if min(steps) < 1:
        raise ValueError(f"--time_steps must be ≥ 1, got {FLAGS.time_steps!r}.")
    if FLAGS.dataset not in benchmark.DATASET_SHAPES:
        raise ValueError(f"--dataset must be one of {', '.join(benchmark.DATASET_SHAPES)}.")
    if FLAGS.model not in benchmark.models.MODELS:
        raise ValueError(f"--model must be one of {', '.join(benchmark.models.MODELS)}.")
    if not FLAGS.width > 0:
        raise ValueError(f"--width must be a channel multiplier > 0, got {FLAGS.width}.")
    if FLAGS.batch_size < 1 or FLAGS.repeats < 1:
        raise ValueError("--batch_size and --repeats must be ≥ 1.")
    if FLAGS.memory_only and (FLAGS.plot or FLAGS.profile):
        raise ValueError("--memory_only runs no step: --plot and --profile need step times; drop them.")
    if FLAGS.conv_weight_grad not in benchmark.CONV_WEIGHT_GRADS:
        raise ValueError(f"--conv_weight_grad must be one of {', '.join(benchmark.CONV_WEIGHT_GRADS)}.")
    return names, steps, parse_unroll(FLAGS.unroll)


def parse_unroll(text: str) -> int | bool:
    """``--unroll`` as lax.scan takes it: 0 (or 'true') → True, fully unrolled; n ≥ 1 → n."""
    if text.strip().lower() == "true":
        return True
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"--unroll must be 0 (fully unrolled) or a factor ≥ 1, got {text!r}.")
    return True if value == 0 else value


def main(argv):
    del argv
    try:
        names, steps, unroll = _parse()
    except ValueError as error:
        sys.exit(f"error: {error}")
    try:
        net, params = benchmark.build(FLAGS.model, FLAGS.dataset, conv_weight_grad=FLAGS.conv_weight_grad,
                                      precision=FLAGS.precision, width=FLAGS.width, stem=FLAGS.stem)
    except ValueError as error:
        sys.exit(f"error: {error}")
    env = benchmark.environment()
    width = f" (width {FLAGS.width:g})" if FLAGS.width != 1.0 else ""
    width += f", {FLAGS.stem} stem" if FLAGS.stem else ""
    mode = "compiled only (--memory_only), " if FLAGS.memory_only else ""
    print(f"{FLAGS.model}{width} on {FLAGS.dataset} shapes, {mode}batch {FLAGS.batch_size}, unroll={unroll}, "
          f"{FLAGS.precision}, "
          f"conv weight grad {FLAGS.conv_weight_grad}; "
          f"{env['device_count']}× {env['device_kind']} ({env['backend']}), jax {env['jax']}", flush=True)
    print(benchmark.HEADER, flush=True)
    try:  # e.g. a method that cannot train this model: one line
        records = benchmark.measure(names, net, params, steps, FLAGS.batch_size, FLAGS.repeats, unroll,
                                    log=lambda line: print(line, flush=True),
                                    settings=method_flags.given(_SETTINGS),
                                    baseline=FLAGS.baseline if FLAGS.baseline in names else None,
                                    profile_dir=FLAGS.profile or None, memory_only=FLAGS.memory_only)
    except ValueError as error:
        sys.exit(f"error: {error}")
    if FLAGS.plot:
        from safjax import plots  # matplotlib only when asked for

        plots.benchmark_curves(records, FLAGS.plot, f"{FLAGS.model}, batch {FLAGS.batch_size}, "
                               f"{env['device_kind']}")
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump({"environment": benchmark.environment(), "model": FLAGS.model, "width": FLAGS.width,
                       "stem": FLAGS.stem, "memory_only": FLAGS.memory_only,
                       "settings": method_flags.given(_SETTINGS),
                       "dataset": FLAGS.dataset, "conv_weight_grad": FLAGS.conv_weight_grad, "precision": FLAGS.precision,
                       "records": records}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
