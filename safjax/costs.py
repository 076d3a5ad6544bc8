"""Counting helpers on traced programs: synaptic operator evaluations (docs/methods.md §5.6) and the
FLOPs of dense/conv operations with loop trip counts taken into account; and the analytic
per-training-step costs of temporally-truncated local BPTT against BPTT (docs/methods.md §7,
`tlbptt_costs`, formulas in docs/tlbptt_costs.md).

XLA's ``cost_analysis()`` counts a while-loop body once whatever its trip count, so for a program
whose time loop is a `lax.scan` it cannot say how the work grows with T; `matmul_flops` counts
on the jaxpr instead, multiplying each scan body by its length.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
from jax.extend import core as jax_core

from safjax import local_blocks

SYNAPTIC_PRIMITIVES = ("dot_general", "conv_general_dilated")


def _sub_jaxprs(eqn):
    for value in eqn.params.values():
        candidates = value if isinstance(value, (list, tuple)) else (value,)
        for candidate in candidates:
            if isinstance(candidate, jax_core.ClosedJaxpr):
                yield candidate.jaxpr
            elif isinstance(candidate, jax_core.Jaxpr):
                yield candidate


def count_primitives(jaxpr, names=SYNAPTIC_PRIMITIVES) -> int:
    """Occurrences of the named primitives in ``jaxpr`` and every sub-jaxpr (scan bodies count once)."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in names:
            count += 1
        for sub in _sub_jaxprs(eqn):
            count += count_primitives(sub, names)
    return count


def _dot_flops(eqn) -> float:
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    out = eqn.outvars[0].aval.shape
    return 2.0 * math.prod(out) * math.prod(lhs[d] for d in lhs_contract)


def _conv_flops(eqn) -> float:
    rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, *spatial)
    rhs = eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    per_output = rhs[rhs_spec[1]] * math.prod(rhs[d] for d in rhs_spec[2:])
    return 2.0 * math.prod(out) * per_output


def matmul_flops(jaxpr) -> float:
    """FLOPs (2 per multiply-add) of every dot_general and conv in ``jaxpr``; a scan body counts
    ``length`` times, any other sub-program (cond branches: the largest) once."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        subs = [matmul_flops(sub) for sub in _sub_jaxprs(eqn)]
        if not subs:
            continue
        if name == "scan":
            total += eqn.params["length"] * sum(subs)
        elif name == "cond":
            total += max(subs)
        else:
            total += sum(subs)
    return total


def branches_differ_in_flops(jaxpr) -> bool:
    """Whether ``jaxpr`` holds a conditional whose branches differ in matmul FLOPs: `matmul_flops`
    counts its largest branch, so the count is then an upper bound (e.g. SLTT-K, whose backward
    runs at K of the T steps, is counted as if it ran at all T)."""
    for eqn in jaxpr.eqns:
        subs = list(_sub_jaxprs(eqn))
        if eqn.primitive.name == "cond" and len({matmul_flops(sub) for sub in subs}) > 1:
            return True
        if any(branches_differ_in_flops(sub) for sub in subs):
            return True
    return False


def count_matmul_flops(fn: Callable, *args) -> float:
    """`matmul_flops` of ``fn``'s traced program (a training step includes its backward pass)."""
    return matmul_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def count_synaptic_evaluations(fn: Callable, *args) -> int:
    """Dense/conv evaluations (``dot_general`` + ``conv_general_dilated``) in ``fn``'s forward trace."""
    return count_primitives(jax.make_jaxpr(fn)(*args).jaxpr)


def compiled_memory(fn: Callable, *args, compiler_options: dict | None = None) -> dict[str, int]:
    """XLA's deterministic memory figures for ``jax.jit(fn)(*args)``: temp, argument, output bytes.

    ``compiler_options`` go to XLA's compile (e.g. ``{"xla_backend_optimization_level": 0}``
    halves a CPU compile; buffer assignment, and so every figure here, is unchanged).
    """
    lowered = jax.jit(fn).lower(*args)
    compiled = lowered.compile(compiler_options) if compiler_options else lowered.compile()
    analysis = compiled.memory_analysis()
    return {
        "temp_bytes": int(analysis.temp_size_in_bytes),
        "argument_bytes": int(analysis.argument_size_in_bytes),
        "output_bytes": int(analysis.output_size_in_bytes),
    }


# --- Analytic costs of temporally-truncated local BPTT (docs/methods.md §7); formulas: docs/tlbptt_costs.md


def _op_macs(op, in_shape) -> int:
    """Multiply-accumulates of one evaluation of ``op`` on one example (0 if parameter-free)."""
    if not op.synaptic:
        return 0
    out_shape = op.out_shape(in_shape)
    if len(in_shape) == 1:  # dense: every input feeds every output
        return in_shape[0] * out_shape[0]
    return math.prod(out_shape) * op.kernel_size**2 * in_shape[-1]  # conv: k²·C_in per output


def _op_params(op, in_shape) -> int:
    shapes = jax.eval_shape(lambda key: op.init(key, in_shape), jax.random.PRNGKey(0))
    return sum(math.prod(s.shape) for s in jax.tree_util.tree_leaves(shapes))


def _chain_rows(ops, in_shape, grad_at_input: bool) -> list[dict]:
    """Per operator of a chain: MACs, params, in/out sizes, and whether its input needs a
    gradient (the source carries one, or a parametrised operator precedes it in the chain)."""
    rows, shape, needs = [], tuple(in_shape), grad_at_input
    for op in ops:
        out = tuple(op.out_shape(shape))
        params = _op_params(op, shape)
        rows.append({"macs": _op_macs(op, shape), "params": params, "in": math.prod(shape),
                     "out": math.prod(out), "input_grad": needs})
        needs = needs or params > 0
        shape = out
    return rows


def _tl_counts(net, num_steps, window, blocks, batch, value_bytes, window_mode) -> dict:
    block_of = {l: j for j, b in enumerate(blocks) for l in b.layers}
    shapes = (net.input_shape,) + net.layer_shapes
    sizes = [math.prod(s) for s in shapes]  # sizes[0]: input, sizes[l]: layer l
    num_windows = -(-num_steps // window)
    rows, layer_rows = [], []  # every operator; the layers' operators only
    for l, layer in enumerate(net.layers, start=1):
        for path in layer.paths:
            grad_in = path.source >= 1 and block_of[path.source] == block_of[l]
            chain = _chain_rows(path.ops, shapes[path.source], grad_in)
            rows += chain
            layer_rows += chain
    rows += _chain_rows(net.readout, shapes[-1], True)
    neurons = sum(sizes[1:])
    feedback = sorted({k for b in blocks for k in b.feedback})
    head_inputs = [local_blocks.aux_features(net, b) for b in blocks[:-1]]
    head_params = sum((c + 1) * net.num_classes for c in head_inputs)
    net_params = sum(r["params"] for r in rows)

    # MACs: forward every operator every step; weight gradient of every parametrised operator
    # every step (every block is trained in every window); input gradient where one flows.
    fwd_macs = sum(r["macs"] for r in rows)
    macs = {
        "forward": batch * num_steps * fwd_macs,
        "weight_grad": batch * num_steps * fwd_macs,
        "input_grad": batch * num_steps * sum(r["macs"] for r in rows if r["input_grad"]),
        "aux": 3 * batch * net.num_classes * sum(head_inputs) * num_windows,
        "feedback_forward": (
            batch * num_steps * sum(r["macs"] for r in layer_rows) if feedback else 0
        ),
    }

    # Memory accesses (values): each operator reads its input and writes its output, reads its
    # weights once per step; a neuron reads I, u[t−1], s[t−1] and writes u[t], s[t].
    def forward_step(chain_rows):
        return sum(batch * (r["in"] + r["out"]) + r["params"] for r in chain_rows)

    backward_step = 5 * batch * neurons + sum(
        (batch * (r["in"] + r["out"]) + 2 * r["params"] if r["params"] else 0)
        + (batch * (r["in"] + r["out"]) + r["params"] if r["input_grad"] else 0)
        for r in rows
    )
    last_sizes = [sizes[b.layers[-1]] for b in blocks[:-1]]
    aux_access = 4 * batch * sum(last_sizes) * num_steps + num_windows * (
        2 * batch * sum(last_sizes) + 5 * batch * sum(head_inputs)
        + 3 * batch * net.num_classes * len(head_inputs) + 4 * head_params
    )
    all_params = net_params + head_params
    updates = num_windows if window_mode == "update" else 1
    sums = num_windows - 1 if window_mode == "accumulate" else 0
    access = {
        "forward": num_steps * (forward_step(rows) + 5 * batch * neurons),
        "backward": num_steps * backward_step,
        "aux": aux_access,
        "feedback_forward": num_steps * (
            forward_step(layer_rows) + 5 * batch * neurons
            + 2 * batch * sum(sizes[k] for k in feedback)
        ) if feedback else 0,
        "optimizer": 3 * all_params * updates + 2 * all_params * sums,
    }

    # Activations live at once: per block, its residuals u[t], s[t] over one window, the spikes
    # it and later blocks read from outside (recorded over the window), its pooled features.
    def live(j, block):
        produced = set(range(1, block.layers[0])) | set(feedback)
        read_later = {k for b in blocks[j:] for k in b.inputs + b.feedback}
        records = sum(sizes[k] for k in produced & read_later if k not in block.layers)
        residuals = 2 * sum(sizes[l] for l in block.layers)
        pooled = 0 if block.last else head_inputs[j]
        return batch * (window * (residuals + records) + pooled)

    return {
        "macs": sum(macs.values()),
        "memory_accesses": value_bytes * sum(access.values()),
        "activation_bytes": value_bytes * max(live(j, b) for j, b in enumerate(blocks)),
        "macs_breakdown": macs,
        "memory_access_breakdown": {k: value_bytes * v for k, v in access.items()},
    }


def tlbptt_costs(
    net,
    time_steps: int,
    truncation: int | None = None,
    block_size: int | None = None,
    batch_size: int = 1,
    *,
    bytes_per_value: int = 4,
    window_mode: str = "update",
) -> dict:
    """Analytic per-training-step costs of TL-BPTT and of BPTT on ``net`` (docs/tlbptt_costs.md).

    Returns ``macs``, ``memory_accesses`` (bytes moved), ``activation_bytes`` (activation
    memory live at once), their breakdowns, the same three for BPTT (K = T, one block) under
    ``"bptt"``, and TL-BPTT / BPTT under ``"relative"``.
    """
    if not (isinstance(time_steps, int) and time_steps >= 1):
        raise ValueError(f"`time_steps` must be an int ≥ 1, got {time_steps!r}.")
    if truncation is not None and not (isinstance(truncation, int) and truncation >= 1):
        raise ValueError(f"`truncation` must be None or an int ≥ 1, got {truncation!r}.")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"`batch_size` must be an int ≥ 1, got {batch_size!r}.")
    if window_mode not in ("update", "accumulate"):
        raise ValueError(f"`window_mode` must be 'update' or 'accumulate', got {window_mode!r}.")
    window = min(truncation or time_steps, time_steps)  # K; None → K = T
    counts = _tl_counts(
        net, time_steps, window, local_blocks.partition(net, block_size), batch_size,
        bytes_per_value, window_mode,
    )
    bptt = _tl_counts(
        net, time_steps, time_steps, local_blocks.partition(net, None), batch_size,
        bytes_per_value, window_mode,
    )
    keys = ("macs", "memory_accesses", "activation_bytes")
    counts["bptt"] = {k: bptt[k] for k in keys}
    counts["relative"] = {k: counts[k] / bptt[k] for k in keys}
    return counts
