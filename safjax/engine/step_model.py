"""What the engine needs of a model (docs/methods.md §10.1), and `as_step_model`.

A step model is a static (hashable) description of a per-time-step function whose neurons are
*cells*:

    apply(params, x_t, runtime) -> o[t]     x_t [B, *input_shape] (the mode's input signal) → [B, C];
                                            cell i fires through ``runtime.cell(i, current)``, a
                                            feedback read is ``runtime.previous(i)``
    neurons: tuple                          the cells' neuron models, in cell order
    cell_names: tuple[str, ...]             their names, for messages
    describe_cells(indices) -> str          e.g. "layers [1, 2]" or "cells 'lif1', 'lif2'"
    cell_shapes: tuple[shape, ...]          their per-example shapes
    input_shape, num_classes
    scales_bias: bool                       whether ``apply`` weights its biases by
                                            ``runtime.bias_scale`` (else the engine normalises)
    check_affine(method)                    refuse, in one line, what is not affine between cells
    init_aux(batch_size, key) / aux         per-minibatch state besides the cells (none here)

`safjax.Network` is one (`network_model.NetworkModel`); any Flax NNX module of Flax layers and
`safjax.nn` cells is another (`flax_model.FlaxModel`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class StepModel(Protocol):
    neurons: tuple
    cell_names: tuple
    cell_shapes: tuple
    input_shape: tuple
    num_classes: int
    scales_bias: bool

    def apply(self, params, x_t, runtime): ...

    def describe_cells(self, indices) -> str: ...

    def check_affine(self, method: str) -> None: ...


def as_step_model(model) -> StepModel:
    """The step model of ``model``: itself, a `safjax.Network`'s adapter, or a Flax model's."""
    from safjax import network as network_lib
    from safjax.engine import network_model

    if isinstance(model, network_lib.Network):
        return network_model.of(model)
    if isinstance(model, StepModel):
        return model
    raise ValueError(
        f"expected a safjax.Network, a step model or a Flax NNX module with safjax.nn cells, got "
        f"{type(model).__name__}; see docs/extending.md for the model forms.")
