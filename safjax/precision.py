"""Mixed precision: the synaptic operators (dense, conv) computed in bf16 with f32 accumulation,
everything else — parameters, optimizer state, neuron states, traces, the loss — in f32.

Spikes are 0 or 1 and exact in bf16; what bf16 rounds is the other operand: the weights (8 bits of
mantissa) and, in SAF and OTTT, the accumulations â and traces the operators read (docs/methods.md
§1.5, §3.1), and the analog input of the first layer. The products are summed in f32.
"""

from __future__ import annotations

import dataclasses

from safjax import network as network_lib

PRECISIONS = {"f32": None, "bf16": "bfloat16"}


def with_precision(net: network_lib.Network, precision: str) -> network_lib.Network:
    """``net`` with every synaptic operator computing in ``precision`` (``"f32"``: unchanged)."""
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    dtype = PRECISIONS[precision]

    def set_dtype(op):
        return dataclasses.replace(op, compute_dtype=dtype) if getattr(op, "synaptic", False) else op

    return network_lib.map_operators(net, set_dtype) if dtype is not None else net
