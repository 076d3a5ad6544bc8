"""`safjax.make_train_step` for a Flax model (docs/methods.md §10.1): the same call and step as for a
`safjax.Network`, with ``params = nnx.state(model, nnx.Param)`` in and out.

The method's cell checks (capabilities, one λ, known non-affine layers) run when the step is made;
the shapes, and with them the numerical affinity probe, when the step first sees an input shape,
before anything is compiled for it. A BatchNorm in training mode (BPTT, TBPTT, SLTT) normalises every
step by that step's batch statistics and updates its running statistics every step; they live in
the model, as in Flax: each step reads them from it and writes the new ones back (``model.eval()``
then evaluates with them).
"""

from __future__ import annotations

from typing import Callable

import jax
import optax
from flax import nnx

from safjax import network as network_lib
from safjax.engine import flax_model


def make_train_step(method, module: nnx.Module, optimizer: optax.GradientTransformation, config) -> Callable:
    """``step(params, opt_state, inputs [T, B, ...], labels [B], key=None) -> (params, opt_state,
    StepOutput)`` for a Flax model; ``params`` is ``nnx.State`` of its ``nnx.Param`` variables."""
    model = flax_model.FlaxModel(module)
    method.validate(model)
    expected = jax.eval_shape(lambda: model.params_state)
    random = method.needs_key or model.has_random_streams()
    compiled: dict = {}

    def compile_for(shape, dtype):
        shaped = model.with_input(shape, dtype)
        method.validate(shaped)

        @jax.jit
        def jitted(params, opt_state, inputs, labels, key, stats):
            dropout_key, method_key = jax.random.split(key)
            bound = shaped.bind(dropout_key) if shaped.has_random_streams() else shaped
            bound = bound if stats is None else bound.bind_model_state(stats)
            return method.train_step(bound, params, opt_state, inputs, labels, optimizer=optimizer,
                                     config=config, key=method_key)

        return shaped, jitted

    def step(params, opt_state, inputs, labels, key=None):
        network_lib.check_params(expected, params)
        signature = (tuple(inputs.shape[2:]), str(inputs.dtype))
        if signature not in compiled:
            compiled[signature] = compile_for(*signature)
        shaped, jitted = compiled[signature]
        network_lib.check_inputs(shaped, inputs, labels)
        if key is None and random:
            raise ValueError(
                f"{method.name} on this model draws random numbers every minibatch (dropout or the method's "
                "own): pass a fresh `key` to each step, e.g. step(params, opt_state, inputs, labels, "
                "jax.random.fold_in(key, i)).")
        stats = running_statistics(module, model) if model.carries_state else None
        params, opt_state, metrics = jitted(params, opt_state, inputs, labels,
                                            jax.random.key(0) if key is None else key, stats)
        if metrics.model_state is not None:  # the statistics after this minibatch, back into the model
            set_running_statistics(module, model, metrics.model_state)
        return params, opt_state, metrics

    step.model = model
    return step


def running_statistics(module: nnx.Module, model) -> tuple:
    """The module's running statistics now, in ``model.stat_paths`` order."""
    values = dict(nnx.to_flat_state(nnx.state(module, nnx.BatchStat)))
    return tuple(values[path].get_value() for path in model.stat_paths)


def set_running_statistics(module: nnx.Module, model, stats: tuple) -> None:
    """Write running statistics (in ``model.stat_paths`` order) into the module's BatchStat variables."""
    variables = dict(nnx.to_flat_state(nnx.state(module, nnx.BatchStat)))
    for path, value in zip(model.stat_paths, stats):
        variables[path].set_value(value)

