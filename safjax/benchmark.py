"""Per-method cost of one training minibatch: XLA memory and FLOPs, synaptic operations, wall time.

Deterministic numbers come from the compiled program (`memory_analysis()`, `cost_analysis()`);
wall times are medians over repeats with the methods interleaved in one process, so only their
ratios are meaningful. `experiments/benchmark.py` is the command-line front end.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from safjax import config as config_lib
from safjax import costs, methods, models, ops, simulate
from safjax import network as network_lib
from safjax.methods import ottt, saf

DATASET_SHAPES = {  # (one image or frame [H, W, C], classes)
    "digits": ((8, 8, 1), 10), "cifar10": ((32, 32, 3), 10), "cifar100": ((32, 32, 3), 100),
    "digits_events": ((32, 32, 2), 10), "cifar10_dvs": ((48, 48, 2), 10),
    "dvs_gesture": ((128, 128, 2), 11), "nmnist": ((34, 34, 2), 10),
}


class Variant(NamedTuple):
    """A method with its configuration, e.g. BPTT with rematerialisation."""

    name: str
    method: str
    remat: bool = False


VARIANTS = {name: Variant(name, name) for name in methods.METHODS}
VARIANTS["bptt_remat"] = Variant("bptt_remat", "bptt", remat=True)


def _forward(method: str, net, unroll: int | bool = 1) -> Callable:
    """The method's forward pass alone over T steps: (params, inputs, labels) → outputs."""
    if method in ("saf_e", "saf_f"):
        leak = saf.validate(net, method)

        def saf_forward(p, x, y):
            body = lambda state, x_t: saf.saf_step(net, leak, p, state, x_t)
            return jax.lax.scan(body, saf.init_state(net, x.shape[1], x.dtype), x, unroll=unroll)[1][0]

        return saf_forward
    if method in ("ottt_a", "ottt_o"):

        def ottt_forward(p, x, y):
            step_loss = ottt.make_step_loss(net, config_lib.TrainConfig(), x.shape[0])

            def body(state, x_t):
                _, (state, output, _) = step_loss(p, state, x_t, y)
                return state, output

            return jax.lax.scan(body, ottt.init_state(net, x.shape[1], x.dtype), x, unroll=unroll)[1]

        return ottt_forward
    return lambda p, x, y: simulate.run(net, p, x, unroll)[0]


def _step_forward(method: str, net) -> Callable:
    """One time step of the method's forward: (params, x_t, labels) → outputs."""
    if method in ("saf_e", "saf_f"):
        leak = saf.validate(net, method)
        return lambda p, x, y: saf.saf_step(net, leak, p, saf.init_state(net, x.shape[0], x.dtype), x)
    if method in ("ottt_a", "ottt_o"):
        step_loss = ottt.make_step_loss(net, config_lib.TrainConfig(), 1)
        return lambda p, x, y: step_loss(p, ottt.init_state(net, x.shape[0], x.dtype), x, y)
    return lambda p, x, y: simulate.network_step(net, p, simulate.init_network_state(net, x.shape[0], x.dtype), x)


def synaptic_ops_per_step(method: str, net, params, x_t, labels) -> float:
    """Synaptic operator evaluations per weighted operator per time step (SAF 1, OTTT 2)."""
    count = costs.count_synaptic_evaluations(_step_forward(method, net), params, x_t, labels)
    return count / net.num_synaptic_ops()


def _flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan")))


def _inputs(net, num_steps: int, batch_size: int):
    key = jax.random.PRNGKey(num_steps)
    inputs = jax.random.uniform(key, (num_steps, batch_size) + net.input_shape, jnp.float32)
    return inputs, jax.random.randint(key, (batch_size,), 0, net.num_classes)


CONV_WEIGHT_GRADS = {"auto": None, "swapped": True, "plain": False}


def build(model: str, dataset: str, seed: int = 0, conv_weight_grad: str = "auto"):
    """(net, float32 params) of a registered model at the data set's input shape.

    ``conv_weight_grad``: "auto" (swapped-axes weight gradient on CPU only), "swapped" or "plain"
    (see `safjax.conv`).
    """
    input_shape, num_classes = DATASET_SHAPES[dataset]
    module = models.MODELS[model](nnx.Rngs(seed), num_classes=num_classes, input_shape=input_shape)
    swapped = CONV_WEIGHT_GRADS[conv_weight_grad]

    def set_weight_grad(op):
        return dataclasses.replace(op, swapped_weight_grad=swapped) if isinstance(op, ops.Conv) else op

    return network_lib.map_operators(module.network, set_weight_grad), module.params()


def measure(
    variant_names: list[str],
    net,
    params,
    time_steps: list[int],
    batch_size: int,
    repeats: int = 5,
    unroll: int | bool = 1,
    log: Callable[[str], None] = print,
    truncation: int | None = None,
    block_size: int | None = None,
) -> list[dict]:
    """One record per variant × T (see `experiments/benchmark.py` for the fields).

    ``truncation`` (K) and ``block_size`` (B) configure `tbptt`; its records and BPTT's also carry
    the analytic TL-BPTT cost model (`costs.tlbptt_costs`: MACs, memory accesses, stored
    activation bytes), and every record with a BPTT record at the same T its ratios to BPTT.
    """
    optimizer = optax.sgd(0.01, momentum=0.9)
    records = []
    for num_steps in time_steps:
        inputs, labels = _inputs(net, num_steps, batch_size)
        compiled, rows, arguments = {}, {}, {}
        for name in variant_names:
            variant = VARIANTS[name]
            method = methods.get_method(variant.method)
            truncated = variant.method == "tbptt"
            config = config_lib.TrainConfig(unroll=unroll, remat=variant.remat,
                                            truncation=truncation if truncated else None,
                                            block_size=block_size if truncated else None)
            method_params = method.init_params(net, params, config, jax.random.PRNGKey(0))
            opt_state = optimizer.init(method_params)

            def make_step(unroll, train_step=method.train_step, config=config):
                config = dataclasses.replace(config, unroll=unroll)
                return lambda p, s, x, y: train_step(net, p, s, x, y, optimizer=optimizer, config=config)

            start = time.perf_counter()
            executable = jax.jit(make_step(unroll)).lower(method_params, opt_state, inputs, labels).compile()
            compile_time = time.perf_counter() - start
            memory = executable.memory_analysis()
            compiled[name] = executable
            rows[name] = {
                "method": name,
                "time_steps": num_steps,
                "batch_size": batch_size,
                "unroll": unroll,
                "temp_bytes": int(memory.temp_size_in_bytes),
                "argument_bytes": int(memory.argument_size_in_bytes),
                "output_bytes": int(memory.output_size_in_bytes),
                "truncation": config.truncation,
                "block_size": config.block_size,
                "flops": costs.count_matmul_flops(make_step(unroll), method_params, opt_state, inputs, labels),
                "forward_flops": costs.count_matmul_flops(
                    _forward(variant.method, net, unroll), params, inputs, labels
                ),
                "xla_flops_loop_body_once": _flops(executable),
                "synaptic_ops_per_step": synaptic_ops_per_step(
                    variant.method, net, params, inputs[0], labels
                ),
                "compile_time_s": compile_time,
            }
            if variant.method in ("bptt", "tbptt") and not variant.remat:
                analytic = costs.tlbptt_costs(net, num_steps, config.truncation, config.block_size, batch_size)
                rows[name].update(analytic_macs=analytic["macs"],
                                  analytic_memory_accesses=analytic["memory_accesses"],
                                  analytic_activation_bytes=analytic["activation_bytes"])
            arguments[name] = (method_params, opt_state)
            jax.block_until_ready(executable(method_params, opt_state, inputs, labels))  # warm-up
        times = {name: [] for name in variant_names}
        for _ in range(repeats):  # interleaved, so that drifts hit every method alike
            for name in variant_names:
                start = time.perf_counter()
                jax.block_until_ready(compiled[name](*arguments[name], inputs, labels))
                times[name].append(time.perf_counter() - start)
        for name in variant_names:
            ms = np.asarray(times[name]) * 1e3
            rows[name].update(step_time_ms=float(np.median(ms)), step_time_min_ms=float(ms.min()),
                              step_time_max_ms=float(ms.max()))
        if "bptt" in rows:
            for name in variant_names:
                for key in ("temp_bytes", "step_time_ms", "analytic_macs", "analytic_memory_accesses",
                            "analytic_activation_bytes"):
                    if key in rows[name] and key in rows["bptt"]:
                        rows[name][f"{key}_vs_bptt"] = rows[name][key] / rows["bptt"][key]
        for name in variant_names:
            records.append(rows[name])
            log(format_row(rows[name]))
    return records


HEADER = (f"{'method':<11} {'T':>3} {'temp MB':>9} {'GFLOP':>9} {'fwd GFLOP':>9} {'syn/step':>8} "
          f"{'step ms':>9} {'compile s':>9} {'mem/BPTT':>8}")


def format_row(row: dict) -> str:
    ratio = row.get("temp_bytes_vs_bptt")
    return (f"{row['method']:<11} {row['time_steps']:>3} {row['temp_bytes'] / 1e6:>9.2f} "
            f"{row['flops'] / 1e9:>9.3f} {row['forward_flops'] / 1e9:>9.3f} "
            f"{row['synaptic_ops_per_step']:>8.1f} {row['step_time_ms']:>9.2f} {row['compile_time_s']:>9.2f} "
            f"{'—' if ratio is None else f'{ratio:.3f}':>8}")


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
    """The records as a Markdown table (memory in MB, FLOPs in GFLOP, times in ms)."""
    lines = [
        "| method | T | temp MB | GFLOP (train) | GFLOP (forward) | synaptic evals / op / step | step ms (min–max) | compile s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['method']} | {r['time_steps']} | {r['temp_bytes'] / 1e6:.2f} | {r['flops'] / 1e9:.3f} | "
            f"{r['forward_flops'] / 1e9:.3f} | {r['synaptic_ops_per_step']:.0f} | "
            f"{r['step_time_ms']:.2f} ({r['step_time_min_ms']:.2f}–{r['step_time_max_ms']:.2f}) | "
            f"{r['compile_time_s']:.2f} |"
        )
    return "\n".join(lines)
