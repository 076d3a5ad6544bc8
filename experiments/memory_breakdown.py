"""Where a method's compiled temporary memory goes: the buffers live at the peak of its training step.

    python -m experiments.memory_breakdown --model=vgg11_sws --dataset=cifar10 --batch_size=8 --time_steps=6 --methods=saf_e,ottt_o

Compiles one training minibatch as `safjax.benchmark.measure` does (same model build, inputs,
optimizer and minibatch binding; a Sequential or a plain Flax model such as vgg11_sws_flax) with
XLA's dump switched on (``--xla_dump_to``, restricted to the step's module), and reads three of its
files:

- ``*buffer-assignment.txt``: the allocations; the temporary ones (``preallocated-temp``, and any
  allocation that is not a parameter, an output, a constant or thread-local) add up to
  `memory_analysis().temp_size_in_bytes`, the figure of docs/benchmarks.md. Every value placed in
  them has an offset and a size;
- ``*live-range.txt``: when each value is live in XLA's schedule (a while body is inlined);
- ``*after_optimizations.txt``: each instruction's jax op name (``metadata={op_name=...}``).

For each method it prints the temp size, the step of the schedule where the live temp bytes peak,
and the buffers live there (values aliasing one buffer, e.g. a while loop's carry, count once),
biggest first, with a class: ``param-sized`` (as many elements as a weight: a copy of it, its
standardised or transposed form, a gradient), ``activation`` (carries the batch axis), ``other``.
Then the totals per class and per jax op; ``loop state`` is a while loop's carry, ``copy inserted
by XLA`` a copy XLA's copy insertion added. Checked on XLA:CPU; a GPU dump has the same files.
"""

from __future__ import annotations

import collections
import glob
import math
import os
import re
import shutil
import sys
import tempfile

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "vgg11_sws", "Registered model (safjax.models.MODELS).")
flags.DEFINE_string("dataset", "cifar10", "Input shape and classes (safjax.benchmark.DATASET_SHAPES).")
flags.DEFINE_integer("batch_size", 8, "Minibatch size.")
flags.DEFINE_integer("time_steps", 6, "T.")
flags.DEFINE_string("methods", "saf_e,ottt_o", "Comma list of method specs (as experiments.benchmark); "
                    "ratios are to the last.")
flags.DEFINE_float("width", 1.0, "Width multiplier, for models that take one (1: the registered model).")
flags.DEFINE_integer("top", 12, "Buffers listed per method.")
flags.DEFINE_string("conv_weight_grad", "auto", "auto (swapped on CPU), swapped, plain.")
flags.DEFINE_string("dump_dir", "", "Keep XLA's dump here (default: a temporary folder, deleted).")

_ALLOCATION = re.compile(r"^allocation (\d+): size (\d+)(.*):$")
_VALUE = re.compile(r"^\s*value: <\d+ (\S+?)(\{[\d,]*\})?(?: \(phi\))? @\d+> \(size=(\d+),offset=(\d+)\): (.*)$")
_LIVE = re.compile(r"^\s+(\S+?\{[\d,]*\}):(\d+)-(\d+)$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\S+) ([\w-]+)\(.*?(?:op_name=\"([^\"]*)\")?")
_NOT_TEMP = ("parameter", "maybe-live-out", "thread-local", "constant")


def parse_temp_values(text: str) -> tuple[int, list[tuple[str, int, int, str]]]:
    """(temp bytes, [(value key "name{index}", size, offset within its allocation + base, shape)])
    of an XLA ``*buffer-assignment.txt``; allocations are laid end to end so offsets are unique."""
    values, temp, base, current, current_size = [], 0, 0, False, 0
    for line in text.splitlines():
        match = _ALLOCATION.match(line)
        if match:
            if current:
                base += current_size
            current_size = int(match[2])
            current = not any(kind in match[3] for kind in _NOT_TEMP)
            temp += current_size if current else 0
            continue
        match = _VALUE.match(line)
        if match and current:
            values.append((match[1] + (match[2] or "{}"), int(match[3]), base + int(match[4]), match[5].strip()))
    return temp, values


def parse_live_ranges(text: str) -> dict[str, tuple[int, int]]:
    ranges = {}
    for line in text.split("BufferLiveRange:", 1)[-1].splitlines():
        match = _LIVE.match(line)
        if match:
            ranges[match[1]] = (int(match[2]), int(match[3]))
        elif ranges and line.strip().startswith("Live ranges at"):
            break
    return ranges


def parse_op_names(text: str) -> dict[str, tuple[str, str]]:
    """instruction name → (opcode, jax op name without the common jit/while prefix)."""
    names = {}
    for line in text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            op_name = re.search(r'op_name="([^"]*)"', line)
            op_name = op_name[1] if op_name else ""
            op_name = re.sub(r"^jit\([^)]*\)/(while/body/)?(closed_call/)?", "", op_name)
            names[match[1]] = (match[3], op_name)
    return names


def _dims(shape: str) -> tuple[int, ...]:
    match = re.search(r"\[([\d,]*)\]", shape)
    return tuple(int(d) for d in match[1].split(",") if d) if match else ()


def classify(shape: str, param_sizes: set, batch_size: int) -> str:
    dims = _dims(shape)
    if len(dims) >= 2 and math.prod(dims) in param_sizes and batch_size not in dims[:1]:
        return "param-sized"
    if batch_size in dims and math.prod(dims) >= 16 * batch_size:
        return "activation"
    if len(dims) >= 2 and math.prod(dims) in param_sizes:
        return "param-sized"
    return "other"


def peak_buffers(values, ranges):
    """(peak step, live bytes there, [(key, size, shape)] of distinct buffers live there)."""
    spans = []
    for key, size, offset, shape in values:
        if key in ranges:
            start, end = ranges[key]
            spans.append((start, end, offset, size, key, shape))
    horizon = max((s[1] for s in spans), default=0)
    best = (-1, 0)
    # Live bytes at t: the union of [offset, offset + size) of the values live at t.
    for t in range(horizon + 1):
        intervals = sorted((o, o + s) for a, b, o, s, _, _ in spans if a <= t <= b)
        total, reach = 0, -1
        for lo, hi in intervals:
            if hi > reach:
                total += hi - max(lo, reach)
                reach = hi
        if total > best[1]:
            best = (t, total)
    t = best[0]
    seen, live = set(), []
    for a, b, offset, size, key, shape in sorted(spans, key=lambda s: -s[3]):
        if a <= t <= b and (offset, size) not in seen:
            seen.add((offset, size))
            live.append((key, size, shape))
    return t, best[1], live


def report(spec, temp, values, ranges, op_names, param_sizes, batch_size, top) -> str:
    t, live_bytes, live = peak_buffers(values, ranges)
    by_class, by_op = collections.Counter(), collections.Counter()
    rows = []
    for key, size, shape in live:
        name = key.split("{")[0]
        # Values with no instruction of their own are a while loop's carried state (the tuple
        # its body reads: parameters, optimizer state, the method's state).
        opcode, op_name = op_names.get(name, ("loop state", ""))
        if opcode == "copy" and not op_name:
            op_name = "copy inserted by XLA"
        kind = classify(shape, param_sizes, batch_size)
        by_class[kind] += size
        by_op[(kind, op_name or opcode)] += size
        rows.append((size, kind, f"{name} ({opcode})", shape.split("{")[0], op_name))
    lines = [f"{spec}: temp {temp / 1e6:.2f} MB; live at the peak (schedule step {t}): {live_bytes / 1e6:.2f} MB in "
             f"{len(live)} buffers — " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in by_class.most_common())]
    lines.append(f"  {'MB':>7}  {'class':<11}  {'shape':<22}  {'instruction':<34}  jax op")
    for size, kind, name, shape, op_name in rows[:top]:
        lines.append(f"  {size / 1e6:>7.2f}  {kind:<11}  {shape:<22}  {name[:34]:<34}  {op_name[:60]}")
    lines.append(f"  {sum(r[0] for r in rows[top:]) / 1e6:>7.2f}  (the other {max(len(rows) - top, 0)})")
    lines.append("  by class and jax op:")
    for (kind, op), size in by_op.most_common(8):
        lines.append(f"  {size / 1e6:>7.2f}  {kind:<11}  {op[:80]}")
    return "\n".join(lines)


def main(argv):
    del argv
    dump_root = FLAGS.dump_dir or tempfile.mkdtemp(prefix="xla_buffers_")
    # XLA reads its flags when the backend starts: set them before the first computation.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to={dump_root} "
                               "--xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*jit_step.*").strip()

    import jax
    import optax

    from safjax import benchmark, engine, methods
    from safjax import train_config as config_lib

    net, params = benchmark.build(FLAGS.model, FLAGS.dataset, conv_weight_grad=FLAGS.conv_weight_grad,
                                  width=FLAGS.width)
    inputs, labels = benchmark._inputs(net, FLAGS.time_steps, FLAGS.batch_size)
    key = jax.random.key(FLAGS.time_steps)
    optimizer = optax.sgd(0.01, momentum=0.9)
    config = config_lib.TrainConfig()
    num_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    neurons = sum(math.prod(s) for s in engine.as_step_model(net).cell_shapes)
    print(f"{FLAGS.model} (width {FLAGS.width:g}), {FLAGS.dataset}, batch {FLAGS.batch_size}, T = {FLAGS.time_steps}, "
          f"{jax.default_backend()}: params {4 * num_params / 1e6:.1f} MB, one activation of every spiking layer "
          f"{4 * FLAGS.batch_size * neurons / 1e6:.1f} MB (float32)\n")
    temps = {}
    for spec in [m for m in FLAGS.methods.split(",") if m]:
        name, own = benchmark.parse_variant(spec)
        method = methods.get_method(name, **own)
        method.validate(net)
        method_params = method.init_params(net, params, jax.random.PRNGKey(0))
        opt_state = optimizer.init(method_params)
        param_sizes = {x.size for x in jax.tree_util.tree_leaves(method_params) if x.ndim >= 2}

        def step(p, s, x, y, k, method=method):
            bound, method_key = benchmark.bind_minibatch(net, k)
            return method.train_step(bound, p, s, x, y, optimizer=optimizer, config=config, key=method_key)

        before = set(glob.glob(os.path.join(dump_root, "*")))
        compiled = jax.jit(step).lower(method_params, opt_state, inputs, labels, key).compile()
        temps[spec] = temp = compiled.memory_analysis().temp_size_in_bytes
        new = set(glob.glob(os.path.join(dump_root, "*"))) - before
        found = {suffix: [f for f in new if f.endswith(suffix)] for suffix in
                 ("buffer-assignment.txt", "live-range.txt", "after_optimizations.txt")}
        if not all(found.values()):
            missing = ", ".join(f"*{suffix}" for suffix, files in found.items() if not files)
            print(f"{spec}: temp {temp / 1e6:.2f} MB (no {missing} in XLA's dump at {dump_root})\n")
            continue
        read = {suffix: open(max(files, key=os.path.getsize)).read() for suffix, files in found.items()}
        dumped_temp, values = parse_temp_values(read["buffer-assignment.txt"])
        if dumped_temp != temp:
            print(f"  (note: the dump's temp allocations add up to {dumped_temp / 1e6:.2f} MB)")
        print(report(spec, temp, values, parse_live_ranges(read["live-range.txt"]),
                     parse_op_names(read["after_optimizations.txt"]), param_sizes, FLAGS.batch_size, FLAGS.top) + "\n")
    if len(temps) > 1:
        base = list(temps)[-1]
        print(", ".join(f"{spec} / {base} = {temps[spec] / temps[base]:.3f}" for spec in list(temps)[:-1]))
    if not FLAGS.dump_dir:
        shutil.rmtree(dump_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
