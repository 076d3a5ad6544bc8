"""Counting helpers on traced programs: synaptic operator evaluations (spec §5 item 6) and the
FLOPs of dense/conv operations with loop trip counts taken into account.

XLA's ``cost_analysis()`` counts a while-loop body once whatever its trip count, so for a program
whose time loop is a `lax.scan` it cannot say how the work grows with T; `matmul_flops` counts
on the jaxpr instead, multiplying each scan body by its length.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
from jax.extend import core as jax_core

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


def count_matmul_flops(fn: Callable, *args) -> float:
    """`matmul_flops` of ``fn``'s traced program (a training step includes its backward pass)."""
    return matmul_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def count_synaptic_evaluations(fn: Callable, *args) -> int:
    """Dense/conv evaluations (``dot_general`` + ``conv_general_dilated``) in ``fn``'s forward trace."""
    return count_primitives(jax.make_jaxpr(fn)(*args).jaxpr)


def compiled_memory(fn: Callable, *args) -> dict[str, int]:
    """XLA's deterministic memory figures for ``jax.jit(fn)(*args)``: temp, argument, output bytes."""
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    return {
        "temp_bytes": int(analysis.temp_size_in_bytes),
        "argument_bytes": int(analysis.argument_size_in_bytes),
        "output_bytes": int(analysis.output_size_in_bytes),
    }
