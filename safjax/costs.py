"""Counting helpers: synaptic operator evaluations in a traced program (spec §5 item 6)."""

from __future__ import annotations

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
