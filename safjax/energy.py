"""Synaptic operations per inference and an energy estimate, from the spikes of the plain SNN.

The network is the one of docs/methods.md §1: spiking layers whose current is a sum of paths, each
a chain of operators (`safjax.ops`) on a source (0 = the input x[t], k = spiking layer k; a path
from a layer k ≥ l reads its spikes of step t − 1), and a readout chain on the last layer. Counting
runs that network as inference runs it (`safjax.simulate`, spikes only, Dropout the identity).

For every *synaptic* (weighted: Dense, Conv and their scaled-WS variants) operator — each one of
each path of each layer, and of the readout — per inference (one example, summed over the T steps):

- **AC** (accumulate) operators: the input is a spike-like signal, and a synaptic operation is
  performed only for a non-zero input. Their count is exactly

      Σ_t Σ_outputs (number of non-zero inputs in that output's receptive field)

  = the operator applied, with all weights 1 and no bias, to 1[x ≠ 0], summed over its outputs;
  x is what reaches the operator after the parameter-free operators before it in its chain (an
  average pool, a ×2.74 scale, a flatten, …, applied to spikes). For a dense layer that is
  (non-zero inputs) × out_features (spikes × fan-out); for a convolution each non-zero input
  counts once per output position whose window covers it (zero padding contributes nothing)
  times out_channels.
- **MAC** (multiply-accumulate) operators: the input is analog — the network input (source 0)
  when ``analog_input`` (direct encoding of a static image), or the output of an earlier
  synaptic operator in the same chain. Every input is treated as non-zero and the full dense work
  is done at every step: dense MACs × T.

The **equivalent ANN** evaluates every synaptic operator once with dense MACs (no T): Dense
F_in·F_out, Conv H'·W'·C_out·k²·C_in (every output's full window, padding taps included, as
ANN MAC counts usually are). A feedback path counts once, like any other operator.

`energy` turns the counts into an estimate with the usual 45 nm CMOS figures (Horowitz, ISSCC
2014): 0.9 pJ per 32-bit float accumulate, 4.6 pJ per 32-bit float multiply-accumulate. It is an
estimate of the arithmetic only: memory access, data movement, neuron (membrane) updates and
the readout's accumulation over time are not counted.

A report is a plain, JSON-serialisable dict (`count_operations`, `dataset_report`):

    rows: one per synaptic operator, in network order, each
        layer               int (1-based spiking layer) or "readout"
        path                the path's index within the layer (0 for the readout)
        source              0 = the input, k = spiking layer k (the readout: N)
        operator            the operator's class name, e.g. "ScaledWSConv"
        shape               e.g. "3x3/1 SAME, 64→128" or "256→10"
        kind                "AC" or "MAC"
        ops_per_inference   ACs or MACs per example, summed over the T steps
        dense_macs_per_step the operator's dense MAC count for one pass (the ANN's cost)
        source_rate         mean of 1[source ≠ 0] over steps, examples and units: the source
                            layer's firing rate, or the input's non-zero fraction for source 0
        layer_rate          the firing rate of the spiking layer the operator feeds (None: readout)
    layer_firing_rates     [N] mean firing rate per spiking layer
    input_nonzero_fraction the input's mean non-zero fraction
    ac_per_inference, mac_per_inference   totals over the rows
    ann_mac_per_inference  Σ dense_macs_per_step (one pass)
    time_steps, examples, analog_input
"""

from __future__ import annotations

import functools
import math
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from safjax import network as network_lib
from safjax import ops as ops_lib
from safjax import simulate

Array = jax.Array

PJ_PER_AC = 0.9  # pJ, 32-bit float add, 45 nm (Horowitz, ISSCC 2014)
PJ_PER_MAC = 4.6  # pJ, 32-bit float multiply (3.7) + add (0.9), 45 nm (Horowitz, ISSCC 2014)
ESTIMATE_NOTE = ("estimate: 45 nm arithmetic energy only (Horowitz, ISSCC 2014: {ac} pJ per accumulate, "
                 "{mac} pJ per multiply-accumulate); memory access and neuron updates are not counted")


def _check_operator(op) -> None:
    if not isinstance(op, (ops_lib.Dense, ops_lib.Conv)):
        raise ValueError(
            f"safjax.energy counts Dense and Conv operators (and their subclasses); the synaptic operator "
            f"{type(op).__name__} is neither, so its operations per input cannot be counted.")


def _dense_macs(op, in_shape) -> int:
    """Multiply-accumulates of one dense evaluation of ``op`` on one example."""
    out_shape = op.out_shape(in_shape)
    if isinstance(op, ops_lib.Conv):
        return math.prod(out_shape) * op.kernel_size ** 2 * in_shape[-1]
    return in_shape[0] * out_shape[0]


def _describe(op, in_shape) -> str:
    if isinstance(op, ops_lib.Conv):
        k = op.kernel_size
        return f"{k}x{k}/{op.stride} {op.padding}, {in_shape[-1]}→{op.features}"
    return f"{in_shape[0]}→{op.features}"


def _check_network(net) -> None:
    """Refuse, in one line, a model whose operators cannot be read (a plain Flax model's code)."""
    if not isinstance(net, network_lib.Network):
        what = getattr(net, "module_type", type(net).__name__)
        raise ValueError(
            f"safjax.energy counts each operator's receptive fields in a safjax.Network (an nn.Sequential "
            f"model); {what} is a plain Flax model, whose code it cannot read.")


def _operators(net: network_lib.Network):
    """Every synaptic operator in network order: (layer, path, source, op, in_shape, after_synaptic),
    ``after_synaptic`` when an earlier operator of its chain is synaptic (its input is analog)."""
    _check_network(net)
    shapes = (net.input_shape,) + net.layer_shapes
    chains = [(index, p, path.source, path.ops) for index, layer in enumerate(net.layers, start=1)
              for p, path in enumerate(layer.paths)]
    chains.append(("readout", 0, net.num_layers, net.readout))
    for layer, p, source, chain in chains:
        shape, after = shapes[source], False
        for op in chain:
            if op.synaptic:
                _check_operator(op)
                yield layer, p, source, op, shape, after
                after = True
            shape = tuple(op.out_shape(shape))


def _window_sums(op, nonzero: Array) -> Array:
    """Σ over outputs of the number of non-zero inputs in each output's receptive field, per
    example, for ONE output channel/feature: nonzero [B, *in_shape] bool → [B] int32 (exact
    integers; multiply by out_features/out_channels for the operator's count)."""
    batch = nonzero.shape[0]
    if isinstance(op, ops_lib.Conv):
        per_pixel = nonzero.sum(-1, dtype=jnp.int32)  # [B, H, W]: channels all reach every output channel
        k, s = op.kernel_size, op.stride
        pads = jax.lax.padtype_to_pads(per_pixel.shape[1:], (k, k), (s, s), op.padding)  # as the conv pads
        windows = jax.lax.reduce_window(per_pixel, jnp.int32(0), jax.lax.add, (1, k, k), (1, s, s),
                                        [(0, 0)] + list(pads))
        return windows.sum((1, 2), dtype=jnp.int32)
    return nonzero.reshape(batch, -1).sum(-1, dtype=jnp.int32)


@functools.partial(jax.jit, static_argnums=(0,))
def _traced_counts(net: network_lib.Network, params, inputs: Array):
    """Per step and example: the window sums of every synaptic operator fed by a non-analog chain
    (zeros for those after a synaptic operator) and the non-zero count of every source.
    inputs [T, B, ...] → (tuple of [T, B] int32 per operator, tuple of [T, B] int32 per source)."""
    state = simulate.init_network_state(net, inputs.shape[1], inputs.dtype)

    batch = inputs.shape[1]

    def chain_counts(chain, chain_params, x):
        counts = []
        for op, op_params in zip(chain, chain_params):
            if op.synaptic:
                counts.append(jnp.zeros(batch, jnp.int32) if x is None else _window_sums(op, x != 0))
                x = None  # a weighted sum: analog from here on (counted densely)
            elif x is not None:
                x = op.apply(op_params, x, 1.0)
        return counts

    def body(state, x_t):
        new_state, (_, spikes) = simulate.network_step(net, params, state, x_t)
        signals = (x_t,) + tuple(spikes)
        counts = []
        for index, (layer, layer_params) in enumerate(zip(net.layers, params["layers"]), start=1):
            for path, path_params in zip(layer.paths, layer_params):
                source = path.source
                x = signals[source] if source < index else state[source - 1].s  # feedback: step t − 1
                counts += chain_counts(path.ops, path_params, x)
        counts += chain_counts(net.readout, params["readout"], signals[-1])
        nonzero = tuple((s != 0).reshape(s.shape[0], -1).sum(-1, dtype=jnp.int32) for s in signals)
        return new_state, (tuple(counts), nonzero)

    _, (counts, nonzero) = jax.lax.scan(body, state, inputs)
    return counts, nonzero


def _batch_sums(net, params, inputs, num_valid: int | None = None) -> dict:
    """Integer sums over the T steps and the first ``num_valid`` examples (default: all)."""
    counts, nonzero = jax.device_get(_traced_counts(net, params, inputs))
    rows = slice(None) if num_valid is None else slice(0, num_valid)
    total = lambda a: int(np.asarray(a, np.int64)[:, rows].sum())  # noqa: E731
    examples = inputs.shape[1] if num_valid is None else num_valid
    return {"window_sums": [total(c) for c in counts], "nonzero": [total(n) for n in nonzero],
            "examples": examples, "time_steps": int(inputs.shape[0])}


def _report(net: network_lib.Network, sums: dict, analog_input: bool) -> dict:
    examples, steps = sums["examples"], sums["time_steps"]
    if examples < 1:
        raise ValueError("no examples to count operations over.")
    sizes = [math.prod(net.input_shape)] + [math.prod(s) for s in net.layer_shapes]
    rates = [n / (examples * steps * size) for n, size in zip(sums["nonzero"], sizes)]
    rows = []
    for (layer, p, source, op, in_shape, after), window in zip(_operators(net), sums["window_sums"]):
        dense = _dense_macs(op, in_shape)
        analog = after or (source == 0 and analog_input)
        ops = dense * steps if analog else window * op.features / examples
        rows.append({
            "layer": layer, "path": p, "source": source, "operator": type(op).__name__,
            "shape": _describe(op, in_shape), "kind": "MAC" if analog else "AC",
            "ops_per_inference": float(ops), "dense_macs_per_step": int(dense),
            "source_rate": float(rates[source]),
            "layer_rate": None if layer == "readout" else float(rates[layer]),
        })
    return {
        "rows": rows,
        "layer_firing_rates": [float(r) for r in rates[1:]],
        "input_nonzero_fraction": float(rates[0]),
        "ac_per_inference": float(sum(r["ops_per_inference"] for r in rows if r["kind"] == "AC")),
        "mac_per_inference": float(sum(r["ops_per_inference"] for r in rows if r["kind"] == "MAC")),
        "ann_mac_per_inference": int(sum(r["dense_macs_per_step"] for r in rows)),
        "time_steps": steps, "examples": examples, "analog_input": bool(analog_input),
    }


def count_operations(net: network_lib.Network, params, inputs: Array, analog_input: bool) -> dict:
    """The synaptic operations of ``net`` per inference on ``inputs`` (module docstring).

    ``params`` are the network's parameters (``method.network_params(...)``); ``inputs`` are
    time-major [T, B, *input_shape]; ``analog_input``: the input is analog (direct encoding of
    images; then operators on source 0 count MACs), False for spike/event input. Counts are per
    example (the mean over the B examples), summed over the T steps. Returns the report dict.
    """
    expected = net.input_shape
    if inputs.ndim != len(expected) + 2 or tuple(inputs.shape[2:]) != expected:
        raise ValueError(f"`inputs` must be time-major [T, B, *{expected}], got {tuple(inputs.shape)}.")
    list(_operators(net))  # refuses operators it cannot count, before running anything
    return _report(net, _batch_sums(net, params, inputs), analog_input)


def dataset_report(net: network_lib.Network, params, batches: Iterable, analog_input: bool) -> dict:
    """`count_operations` over many batches: sums over them and divides by the examples.

    ``batches`` yields time-major inputs [T, B, ...], or ``(inputs, num_valid)`` where only the
    first ``num_valid`` examples of the batch count (a padded last batch).
    """
    list(_operators(net))  # refuses operators it cannot count, before running anything
    total = None
    for batch in batches:
        inputs, num_valid = batch if isinstance(batch, tuple) else (batch, None)
        sums = _batch_sums(net, params, inputs, num_valid)
        if total is None:
            total = sums
            continue
        if sums["time_steps"] != total["time_steps"]:
            raise ValueError("dataset_report: batches with different T.")
        for key in ("window_sums", "nonzero"):
            total[key] = [a + b for a, b in zip(total[key], sums[key])]
        total["examples"] += sums["examples"]
    if total is None:
        raise ValueError("dataset_report: no batches.")
    return _report(net, total, analog_input)


def energy(report: dict, pj_per_ac: float = PJ_PER_AC, pj_per_mac: float = PJ_PER_MAC) -> dict:
    """Energy per inference in nJ from a `count_operations` report: an ESTIMATE.

    SNN = ACs · ``pj_per_ac`` + MACs · ``pj_per_mac``; the equivalent ANN = its dense MACs ·
    ``pj_per_mac``. Defaults: 45 nm CMOS, 32-bit float (M. Horowitz, "Computing's energy problem
    (and what we can do about it)", ISSCC 2014): 0.9 pJ per accumulate, 4.6 pJ per
    multiply-accumulate. Only the synaptic arithmetic is counted: memory access, data movement and
    the neuron (membrane, threshold, reset) updates are ignored, so the figures compare the
    networks' arithmetic, not what a chip would draw.
    """
    ac_nj = report["ac_per_inference"] * pj_per_ac / 1e3
    mac_nj = report["mac_per_inference"] * pj_per_mac / 1e3
    ann_nj = report["ann_mac_per_inference"] * pj_per_mac / 1e3
    snn_nj = ac_nj + mac_nj
    return {
        "snn_energy_nj": snn_nj, "snn_ac_energy_nj": ac_nj, "snn_mac_energy_nj": mac_nj,
        "ann_energy_nj": ann_nj, "snn_to_ann_energy_ratio": snn_nj / ann_nj if ann_nj else None,
        "pj_per_ac": pj_per_ac, "pj_per_mac": pj_per_mac,
        "note": ESTIMATE_NOTE.format(ac=pj_per_ac, mac=pj_per_mac),
    }


def _count(value: float) -> str:
    for scale, unit in ((1e9, " G"), (1e6, " M")):
        if abs(value) >= scale:
            return f"{value / scale:.3f}{unit}"
    return f"{value:,.0f}"


def format_table(report: dict, pj_per_ac: float = PJ_PER_AC, pj_per_mac: float = PJ_PER_MAC) -> str:
    """A Markdown table: one row per synaptic operator, then the totals and the energy estimate."""
    lines = ["| layer | source | operator | kind | ops / inference | dense MACs / step (ANN) | source rate | layer rate |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in report["rows"]:
        source = "input" if r["source"] == 0 else f"layer {r['source']}"
        rate = "–" if r["layer_rate"] is None else f"{r['layer_rate']:.4f}"
        lines.append(f"| {r['layer']} | {source} | {r['operator']} {r['shape']} | {r['kind']} | "
                     f"{_count(r['ops_per_inference'])} | {_count(r['dense_macs_per_step'])} | "
                     f"{r['source_rate']:.4f} | {rate} |")
    lines.append(f"| **total** | | | AC | {_count(report['ac_per_inference'])} | | | |")
    lines.append(f"| **total** | | | MAC | {_count(report['mac_per_inference'])} | "
                 f"{_count(report['ann_mac_per_inference'])} | | |")
    e = energy(report, pj_per_ac, pj_per_mac)
    ratio = "" if e["snn_to_ann_energy_ratio"] is None else f" (ratio {e['snn_to_ann_energy_ratio']:.3f})"
    lines += ["", f"Per inference (T = {report['time_steps']}, mean over {report['examples']} examples): "
              f"SNN ≈ {e['snn_energy_nj']:.2f} nJ vs the equivalent ANN ≈ {e['ann_energy_nj']:.2f} nJ{ratio}; "
              f"{e['note']}."]
    return "\n".join(lines)


def summary_line(report: dict) -> str:
    """One line: SNN vs ANN energy per inference, marked as an estimate."""
    e = energy(report)
    ratio = "" if e["snn_to_ann_energy_ratio"] is None else f", ratio {e['snn_to_ann_energy_ratio']:.3f}"
    return (f"energy per inference (45 nm estimate, arithmetic only): SNN {e['snn_energy_nj']:.2f} nJ "
            f"({_count(report['ac_per_inference'])} AC + {_count(report['mac_per_inference'])} MAC) vs "
            f"ANN {e['ann_energy_nj']:.2f} nJ ({_count(report['ann_mac_per_inference'])} MAC){ratio}")
