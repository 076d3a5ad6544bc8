"""What methods require of a model's cells, checked when a step is made (docs/methods.md §10.4)."""

from __future__ import annotations

from safjax.engine import step_model


def require_capability(model, capability: str, method: str, trained_by: str = "bptt, tbptt or sltt") -> None:
    """Refuse, in one line, a model with a cell whose neuron lacks ``capability`` for ``method``."""
    from safjax.neurons import base

    model = step_model.as_step_model(model)
    bad = [(index, neuron) for index, neuron in enumerate(model.neurons) if capability not in neuron.capabilities]
    if bad:
        kinds = sorted({neuron.describe() for _, neuron in bad})
        raise ValueError(
            f"{method} needs {base.MEANING[capability]}, but {model.describe_cells([i for i, _ in bad])} use "
            f"{', '.join(kinds)}; {base.FIX[capability]}, or train this model with {trained_by}.")


def uniform_leak(model, method: str) -> float:
    """The model's single λ; methods built on traces need one λ for every cell."""
    leaks = {neuron.leak for neuron in step_model.as_step_model(model).neurons}
    if len(leaks) != 1:
        raise ValueError(
            f"{method} needs one leak λ shared by all layers (traces and accumulations decay "
            f"with the postsynaptic λ), got {sorted(leaks)}; use the same LIF leak everywhere.")
    return leaks.pop()


def require_online(model, capability: str, method: str) -> float:
    """What SAF, OTTT and SR need: affine maps between cells, ``capability`` in every cell, one λ;
    returns λ."""
    model = step_model.as_step_model(model)
    model.check_affine(method)
    require_capability(model, capability, method)
    return uniform_leak(model, method)
