"""Per-method cost of one training minibatch: XLA memory and FLOPs, synaptic operations, wall time.

Deterministic numbers come from the compiled program (`memory_analysis()`, `cost_analysis()`);
wall times are medians over repeats with the methods interleaved in one process, so only their
ratios are meaningful. `experiments/benchmark.py` is the command-line front end.

A model is a `safjax.Network` (a registered `nn.Sequential`'s) or a plain Flax NNX model's step
model (`engine.flax_model.FlaxModel`, params ``nnx.state(module, nnx.Param)``): every method runs
on both; the analytic cost models, which read a Network's layers, are left out for the latter.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from safjax import train_config as config_lib
from safjax import costs, methods, models, nn, ops, step_builder
from safjax import precision as precision_lib
from safjax import network as network_lib
from safjax.engine import flax_model

DATASET_SHAPES = {  # (one image or frame [H, W, C], classes)
    "digits": ((8, 8, 1), 10), "cifar10": ((32, 32, 3), 10), "cifar100": ((32, 32, 3), 100),
    "digits_events": ((32, 32, 2), 10), "cifar10_dvs": ((48, 48, 2), 10),
    "dvs_gesture": ((128, 128, 2), 11), "nmnist": ((34, 34, 2), 10),
    "imagenet2012": ((224, 224, 3), 1000),
}


def parse_variant(spec: str) -> tuple[str, dict]:
    """A benchmarked variant, a method spec (`safjax.methods.parse_spec`: ``"bptt:remat=true"``)."""
    return methods.parse_spec(spec)


def synaptic_ops_per_step(method: methods.Method, net, params, x_t, labels) -> float:
    """Synaptic operator evaluations per weighted operator per time step (SAF 1, OTTT 2)."""
    count = costs.count_synaptic_evaluations(functools.partial(method.step_forward, net), params, x_t, labels)
    return count / num_synaptic_ops(net, params, x_t, labels)


def num_synaptic_ops(net, params, x_t, labels) -> int:
    """Weighted operators: a Network's, counted in its structure; a Flax model's, counted as the
    evaluations of its plain spiking step, which evaluates each of them once."""
    if isinstance(net, network_lib.Network):
        return net.num_synaptic_ops()
    plain = functools.partial(methods.get_method("bptt").step_forward, net)
    return costs.count_synaptic_evaluations(plain, params, x_t, labels)


def bind_minibatch(net, key):
    """Inside a traced step: (``net`` with this minibatch's dropout masks, the method's key), for a
    Network (`step_builder.bind_minibatch`) or a Flax model (as `safjax.make_train_step` binds it)."""
    if isinstance(net, network_lib.Network):
        return step_builder.bind_minibatch(net, key)
    dropout_key, method_key = jax.random.split(key)
    return (net.bind(dropout_key) if net.has_random_streams() else net), method_key


def _flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan")))


def _inputs(net, num_steps: int, batch_size: int, abstract: bool = False):
    if abstract:  # their shapes and dtypes only: what a compile needs, no memory held
        return jax.eval_shape(lambda: _inputs(net, num_steps, batch_size))
    key = jax.random.PRNGKey(num_steps)
    inputs = jax.random.uniform(key, (num_steps, batch_size) + net.input_shape, jnp.float32)
    return inputs, jax.random.randint(key, (batch_size,), 0, net.num_classes)


CONV_WEIGHT_GRADS = {"auto": None, "swapped": True, "plain": False}


def build(model: str, dataset: str, seed: int = 0, conv_weight_grad: str = "auto", precision: str = "f32",
          width: float = 1.0, stem: str | None = None):
    """(net, float32 params) of a registered model at the data set's input shape: a Sequential's
    (`safjax.Network`, its params tree), or a plain Flax model's (the step model
    ``FlaxModel(module).with_input(shape, float32)``, ``nnx.state(module, nnx.Param)``).

    ``conv_weight_grad``: "auto" (swapped-axes weight gradient on CPU only), "swapped" or "plain"
    (see `safjax.conv`). ``precision``: "f32" or "bf16" synaptic operators (`safjax.precision`); in a
    Flax model both reach its `safjax.nn` operators. ``width`` multiplies the model's channel
    counts (1: the registered model; every registered model takes it). ``stem``: a ResNet's stem,
    ``"cifar"`` or ``"imagenet"`` (`safjax.models.SpikingResNet`; None: the model's default).
    """
    input_shape, num_classes = DATASET_SHAPES[dataset]
    extra = {"width": width} if width != 1.0 else {}
    if stem is not None:
        if "stem" not in inspect.signature(models.MODELS[model]).parameters:
            raise ValueError(f"a stem ({stem!r}) is chosen for ResNets only; {model} has none.")
        extra["stem"] = stem
    module = models.MODELS[model](nnx.Rngs(seed), num_classes=num_classes, input_shape=input_shape, **extra)
    swapped = CONV_WEIGHT_GRADS[conv_weight_grad]

    def set_weight_grad(op):
        return dataclasses.replace(op, swapped_weight_grad=swapped) if isinstance(op, ops.Conv) else op

    if isinstance(module, nn.Sequential):
        net = network_lib.map_operators(module.network, set_weight_grad)
        return precision_lib.with_precision(net, precision), module.params()
    if precision not in precision_lib.PRECISIONS:
        raise ValueError(f"`precision` must be one of {', '.join(precision_lib.PRECISIONS)}, got {precision!r}.")
    dtype = precision_lib.PRECISIONS[precision]
    for _, layer in nnx.iter_graph(module):
        if isinstance(layer, nn.Operator):
            op = set_weight_grad(layer.op)
            layer.op = dataclasses.replace(op, compute_dtype=dtype) if dtype and op.synaptic else op
    return flax_model.FlaxModel(module).with_input(input_shape, jnp.float32), nnx.state(module, nnx.Param)


def measure(
    variants: list[str],
    net,
    params,
    time_steps: list[int],
    batch_size: int,
    repeats: int = 5,
    unroll: int | bool = 1,
    log: Callable[[str], None] = print,
    settings: dict | None = None,
    baseline: str | None = None,
    profile_dir: str | None = None,
    profile_variants: list[str] | None = None,
    memory_only: bool = False,
) -> list[dict]:
    """One record per variant × T (see `experiments/benchmark.py` for the fields).

    ``memory_only``: compile each step for abstract inputs (shapes only, so a large batch holds no
    host memory) and record its memory analysis, FLOPs and counts, but never run it (no warm-up, no
    timed repeats, no profile: records have no ``step_time_*`` fields), e.g. for a model too large
    to step on this machine; ``repeats`` and ``profile_dir`` are then ignored.

    ``variants`` are method specs (`parse_variant`: ``"saf_e"``, ``"bptt:remat=true"``); ``settings``
    (e.g. ``{"truncation": 2, "block_size": 1}``) reach every method that takes them, under the
    spec's own. Records carry the method's settings, its analytic costs where the method has a
    cost model (``analytic_*``: TL-BPTT's MACs, memory accesses, stored activation bytes), and,
    with a ``baseline`` variant among ``variants``, their ratios to it at the same T
    (``*_vs_<baseline>``). With ``profile_dir``, each record also holds ``profile``, the top trace
    events of its step (`profile`), traced into ``<profile_dir>/<variant>_T<T>/``;
    ``profile_variants`` limits that to some of the variants (default: all).
    """
    optimizer = optax.sgd(0.01, momentum=0.9)
    config = config_lib.TrainConfig(unroll=unroll)
    analytic_costs = isinstance(net, network_lib.Network)
    if not analytic_costs:
        log("(a Flax model: no analytic cost model — docs/tlbptt_costs.md's formulas read a safjax.Network's layers)")
    built = {}
    for spec in variants:
        name, own = parse_variant(spec)
        common = {k: v for k, v in (settings or {}).items() if k in methods.settings_of(name)}
        method = methods.get_method(name, **{**common, **own})
        method.validate(net)
        built[spec] = method
    if baseline is not None and baseline not in built:
        raise ValueError(f"`baseline` {baseline!r} is not one of the benchmarked variants {list(built)}.")
    unknown = [spec for spec in profile_variants or () if spec not in built]
    if unknown:
        raise ValueError(f"`profile_variants` {unknown} are not among the benchmarked variants {list(built)}.")
    records = []
    for num_steps in time_steps:
        inputs, labels = _inputs(net, num_steps, batch_size, abstract=memory_only)
        x_0 = jax.ShapeDtypeStruct(inputs.shape[1:], inputs.dtype) if memory_only else inputs[0]
        key = jax.random.key(num_steps)
        compiled, rows, arguments = {}, {}, {}
        for spec, method in built.items():
            method_params = method.init_params(net, params, jax.random.PRNGKey(0))
            opt_state = optimizer.init(method_params)

            def make_step(unroll, method=method):
                step_config = dataclasses.replace(config, unroll=unroll)
                def step(p, s, x, y, k):
                    bound, method_key = bind_minibatch(net, k)
                    return method.train_step(bound, p, s, x, y, optimizer=optimizer, config=step_config,
                                             key=method_key)

                return step

            step_jaxpr = jax.make_jaxpr(make_step(unroll))(method_params, opt_state, inputs, labels, key).jaxpr
            start = time.perf_counter()
            executable = jax.jit(make_step(unroll)).lower(method_params, opt_state, inputs, labels, key).compile()
            compile_time = time.perf_counter() - start
            memory = executable.memory_analysis()
            rows[spec] = {
                "method": spec,
                "time_steps": num_steps,
                "batch_size": batch_size,
                "unroll": unroll,
                **dict(method.settings),
                "temp_bytes": int(memory.temp_size_in_bytes),
                "argument_bytes": int(memory.argument_size_in_bytes),
                "output_bytes": int(memory.output_size_in_bytes),
                "alias_bytes": int(memory.alias_size_in_bytes),
                "flops": costs.matmul_flops(step_jaxpr),
                "flops_upper_bound": costs.branches_differ_in_flops(step_jaxpr),
                "forward_flops": costs.count_matmul_flops(
                    lambda p, x, y: method.forward(net, p, x, y, unroll), params, inputs, labels
                ),
                "xla_flops_loop_body_once": _flops(executable),
                "synaptic_ops_per_step": synaptic_ops_per_step(method, net, params, x_0, labels),
                "compile_time_s": compile_time,
            }
            analytic = method.cost_model(net, num_steps, batch_size) if method.cost_model and analytic_costs else None
            if analytic is not None:
                rows[spec].update(analytic_macs=analytic["macs"],
                                  analytic_memory_accesses=analytic["memory_accesses"],
                                  analytic_activation_bytes=analytic["activation_bytes"])
            if memory_only:  # nothing runs: keep no executable or arguments
                log(f"{spec}, T = {num_steps}, batch {batch_size}: compiled in {compile_time:.1f} s, "
                    f"temp + argument + output = {memory_bytes(rows[spec]) / 1e9:.3f} GB")
                continue
            compiled[spec] = executable
            arguments[spec] = (method_params, opt_state)
            jax.block_until_ready(executable(method_params, opt_state, inputs, labels, key))  # warm-up
        if not memory_only:
            _time_steps(built, compiled, arguments, rows, inputs, labels, key, num_steps, repeats, profile_dir,
                        profile_variants, log)
        if baseline is not None:
            for spec in built:
                for key_name in ("temp_bytes", "step_time_ms", "analytic_macs", "analytic_memory_accesses",
                                 "analytic_activation_bytes"):
                    if key_name in rows[spec] and key_name in rows[baseline]:
                        rows[spec][f"{key_name}_vs_{baseline}"] = rows[spec][key_name] / rows[baseline][key_name]
        for spec in built:
            records.append(rows[spec])
            log(format_row(rows[spec], baseline))
    return records


def _time_steps(built, compiled, arguments, rows, inputs, labels, key, num_steps, repeats, profile_dir,
                profile_variants, log) -> None:
    """Add the step times (and, with ``profile_dir``, the profiles) of the compiled steps to ``rows``."""
    times = {spec: [] for spec in built}
    cpu_times = {spec: [] for spec in built}
    for _ in range(repeats):  # interleaved, so that drifts hit every method alike
        for spec in built:
            start, cpu_start = time.perf_counter(), time.process_time()
            jax.block_until_ready(compiled[spec](*arguments[spec], inputs, labels, key))
            times[spec].append(time.perf_counter() - start)
            cpu_times[spec].append(time.process_time() - cpu_start)
    if profile_dir:
        import os

        for spec in (built if profile_variants is None else profile_variants):
            run = functools.partial(compiled[spec], *arguments[spec], inputs, labels, key)
            directory = os.path.join(profile_dir, f"{spec.replace(':', '_')}_T{num_steps}")
            rows[spec]["profile"] = profile(run, directory, repeats)
            log(f"{spec}, T = {num_steps}: top events (trace in {directory})\n" + format_profile(rows[spec]["profile"]))
    for spec in built:
        ms = np.asarray(times[spec]) * 1e3
        rows[spec].update(step_time_ms=float(np.median(ms)), step_time_min_ms=float(ms.min()),
                          step_time_max_ms=float(ms.max()),
                          step_cpu_time_ms=float(np.median(cpu_times[spec]) * 1e3))


def memory_bytes(row: dict) -> int:
    """A record's compiled temp + argument + output bytes per device (the trainer's ``peak_bytes``)."""
    return row["temp_bytes"] + row["argument_bytes"] + row["output_bytes"]


def batch_for_memory(rows: list[dict], budget_bytes: float) -> dict:
    """The largest batch whose `memory_bytes` fits in ``budget_bytes``, extrapolated from records of
    one method and T at two or more batch sizes by a least-squares line ``bytes = a + b·batch``:
    ``{"intercept_bytes", "bytes_per_example", "batch"}`` (``batch`` rounded down; 0 when even the
    fixed part exceeds the budget; None for a line that does not grow). docs/scaling.md checks its
    answers with compiles at the predicted batch."""
    batches = np.asarray([r["batch_size"] for r in rows], float)
    if len(set(batches)) < 2:
        raise ValueError("need records at two or more batch sizes to fit a line.")
    slope, intercept = np.polyfit(batches, np.asarray([memory_bytes(r) for r in rows], float), 1)
    batch = int(np.floor((budget_bytes - intercept) / slope)) if slope > 0 else None
    return {"intercept_bytes": float(intercept), "bytes_per_example": float(slope),
            "batch": max(batch, 0) if batch is not None else None}


def profile(run: Callable[[], object], directory: str, repeats: int = 3, top: int = 15) -> list[dict]:
    """Run ``run()`` (a compiled step, blocking) ``repeats`` times under `jax.profiler.trace` into
    ``directory`` (TensorBoard / Perfetto trace) and return the ``top`` trace events by total time:
    ``[{"name", "total_ms", "calls", "share"}]`` — on a GPU the kernels, on a CPU the XLA thunks,
    and the runtime's own events (Python frames excluded)."""
    import collections
    import glob
    import gzip
    import json
    import os

    run()  # compiled and warm before the trace starts
    with jax.profiler.trace(directory, create_perfetto_trace=True):
        for _ in range(repeats):
            jax.block_until_ready(run())
    files = sorted(glob.glob(os.path.join(directory, "**", "perfetto_trace.json.gz"), recursive=True),
                   key=os.path.getmtime)
    if not files:
        return []
    with gzip.open(files[-1]) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    totals, calls = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("ph") == "X" and not event.get("name", "$").startswith("$"):
            totals[event["name"]] += event.get("dur", 0)
            calls[event["name"]] += 1
    whole = max(totals.values(), default=0) or 1
    return [{"name": name, "total_ms": micros / 1e3 / repeats, "calls": calls[name] / repeats,
             "share": micros / whole} for name, micros in totals.most_common(top)]


def format_profile(rows: list[dict]) -> str:
    """`profile`'s rows as a Markdown table (per step; share of the longest event, usually the step)."""
    lines = ["| event | ms / step | calls / step | share of the longest |", "|---|---:|---:|---:|"]
    lines += [f"| `{r['name'][:70]}` | {r['total_ms']:.3f} | {r['calls']:.0f} | {r['share']:.2f} |" for r in rows]
    return "\n".join(lines)


HEADER = (f"{'method':<11} {'T':>3} {'temp MB':>9} {'GFLOP':>9} {'fwd GFLOP':>9} {'syn/step':>8} "
          f"{'step ms':>9} {'compile s':>9} {'mem/base':>8}")


def format_row(row: dict, baseline: str | None = None) -> str:
    ratio = row.get(f"temp_bytes_vs_{baseline}") if baseline else None
    return (f"{row['method']:<11} {row['time_steps']:>3} {row['temp_bytes'] / 1e6:>9.2f} "
            f"{('≤' if row.get('flops_upper_bound') else '') + format(row['flops'] / 1e9, '.3f'):>9} "
            f"{row['forward_flops'] / 1e9:>9.3f} "
            f"{row['synaptic_ops_per_step']:>8.1f} {_ms(row.get('step_time_ms')):>9} {row['compile_time_s']:>9.2f} "
            f"{'—' if ratio is None else f'{ratio:.3f}':>8}")


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _step_times(row: dict) -> str:
    """"median (min–max)" ms, or "—" for a record that was compiled but not run (``memory_only``)."""
    if "step_time_ms" not in row:
        return "—"
    return f"{row['step_time_ms']:.2f} ({row['step_time_min_ms']:.2f}–{row['step_time_max_ms']:.2f})"


def environment() -> dict:
    """Device kind and count, backend, and versions — recorded next to every benchmark."""
    import jaxlib

    device = jax.devices()[0]
    info = {
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
    }
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        info["process_peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])
    return info


def markdown_table(records: list[dict]) -> str:
    """The records as a Markdown table (memory in MB, FLOPs in GFLOP, times in ms; "≤" marks a
    FLOP count that is an upper bound, `costs.branches_differ_in_flops`)."""
    lines = [
        "| method | T | temp MB | GFLOP (train) | GFLOP (forward) | synaptic evals / op / step | step ms (min–max) | compile s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['method']} | {r['time_steps']} | {r['temp_bytes'] / 1e6:.2f} | "
            f"{'≤ ' if r.get('flops_upper_bound') else ''}{r['flops'] / 1e9:.3f} | "
            f"{r['forward_flops'] / 1e9:.3f} | {r['synaptic_ops_per_step']:.0f} | "
            f"{_step_times(r)} | "
            f"{r['compile_time_s']:.2f} |"
        )
    return "\n".join(lines)
