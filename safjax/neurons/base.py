"""The neuron protocol: what every neuron model gives the methods (docs/methods.md §1.2, §1.6).

A neuron model is a frozen dataclass (hashable: it sits in the static `Network`) with

    init_state(shape, dtype) -> state        the layer's state at t = 0, [B, ...] leaves; the state
                                             is a NamedTuple whose field ``s`` holds the spikes of
                                             the last step (feedback paths read ``state.s``)
    step(state, current, stop_state_gradient=False) -> (state, s)
                                             one step, (state[t−1], I[t] [B, ...]) → (state[t], s[t]);
                                             ``stop_state_gradient`` detaches state[t−1] (OTTT, SLTT)
    capabilities: frozenset[str]             which identities hold for it (below)
    describe() -> str                        a short name for error messages, e.g. "LIF(reset='hard')"

Methods that need a capability call `require` when their step is made, and refuse a network
with a neuron that lacks it in one line. The capabilities:

- ``TRACES``: a fixed threshold V_th and one leak λ (``leak``, ``threshold``, ``surrogate``
  attributes with the LIF meaning), so the presynaptic trace â[t] = λ â[t−1] + s[t] carries the
  weight gradient (OTTT, docs/methods.md §3.1).
- ``ACCUMULATION``: ``TRACES`` and the soft (subtractive) reset, so u[t] is a function of the
  accumulated input and â alone (SAF §4 and SR §6 rely on it; docs/methods.md §1.5).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

TRACES = "traces"
ACCUMULATION = "accumulation"

MEANING = {
    TRACES: "neurons with a fixed threshold and one leak (the trace form of docs/methods.md §3.1)",
    ACCUMULATION: "neurons with a fixed threshold and the soft (subtractive) reset (the accumulation "
                  "identity of docs/methods.md §1.5)",
}
FIX = {
    TRACES: "use LIF/IF neurons",
    ACCUMULATION: "use LIF/IF neurons with reset='soft'",
}


@runtime_checkable
class NeuronModel(Protocol):
    """See the module docstring."""

    capabilities: frozenset

    def init_state(self, shape: tuple[int, ...], dtype=...) -> Any: ...

    def step(self, state, current, stop_state_gradient: bool = False) -> tuple[Any, Any]: ...

    def describe(self) -> str: ...


def require(model, capability: str, method: str, trained_by: str = "bptt, tbptt or sltt") -> None:
    """Refuse, in one line, a model (a `safjax.Network` or any step model) with a neuron that lacks
    ``capability`` for ``method``."""
    from safjax.engine import validation

    validation.require_capability(model, capability, method, trained_by)


def check_neuron(neuron) -> None:
    """Refuse an object that does not implement the protocol (e.g. a module instead of its config)."""
    if not isinstance(neuron, NeuronModel):
        raise ValueError(
            f"a spiking layer's neuron must implement safjax.neurons.NeuronModel (init_state, step, "
            f"capabilities, describe), e.g. safjax.neurons.lif(); got {neuron!r}."
        )
