"""The seven training methods, registered in one place.

Every method has ``train_step(net, params, opt_state, inputs, labels, *, optimizer, config)``
→ ``(params, opt_state, StepOutput)`` with inputs [T, B, ...] and labels [B]; the trainer looks
methods up here by name and never branches on them.
"""

from __future__ import annotations

import functools

from safjax.methods import bptt, ottt, ottt_a, ottt_o, saf, saf_e, saf_f, spike_rep, tbptt
from safjax.methods.base import Method, StepOutput

# SAF-F and SR share spike representation's gradient, which grows toward the input of deep nets
# (VGG-11 sWS: 30–300× OTTT's in the first layers): unclipped at the CIFAR preset's SGD 0.1 it
# saturates every layer within a few updates and the net never learns (docs/results.md).
SPIKE_REPRESENTATION_GRAD_CLIP = 0.3

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("bptt", bptt.train_step, "1", "backpropagation through time (docs/methods.md §2)"),
        Method(
            "tbptt", tbptt.train_step, "ceil(T/K)",
            "temporally-truncated (local) BPTT, optional blocks of B layers (docs/methods.md §7)",
            tbptt.init_params, tbptt.network_params,
        ),
        Method("ottt_a", ottt_a.train_step, "1", "OTTT, gradients summed over T (docs/methods.md §3)",
               validate=functools.partial(ottt.validate, method="ottt_a")),
        Method("ottt_o", ottt_o.train_step, "T", "OTTT, update every step (docs/methods.md §3)",
               validate=functools.partial(ottt.validate, method="ottt_o")),
        Method("saf_e", saf_e.train_step, "T", "SAF, update every step (docs/methods.md §4)",
               validate=functools.partial(saf.validate, method="saf_e")),
        Method("saf_f", saf_f.train_step, "1", "SAF, update at the final step (docs/methods.md §4)",
               grad_clip=SPIKE_REPRESENTATION_GRAD_CLIP, validate=functools.partial(saf.validate, method="saf_f")),
        Method("spike_rep", spike_rep.train_step, "1", "spike representation, SR (docs/methods.md §6)",
               grad_clip=SPIKE_REPRESENTATION_GRAD_CLIP,
               validate=functools.partial(saf.validate, method="spike_rep")),
    )
}


def get_method(name: str) -> Method:
    """The registered method called ``name``; a clear error listing the valid names otherwise."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; valid methods: {', '.join(METHODS)}.")
    return METHODS[name]


__all__ = ["METHODS", "Method", "StepOutput", "get_method"]
