"""`safjax.make_train_step` for a Flax model (docs/methods.md §10.1): the same call and step as for a
`safjax.Network`, with ``params = nnx.state(model, nnx.Param)`` in and out.

The method's cell checks (capabilities, one λ, known non-affine layers) run when the step is made;
the shapes, and with them the numerical affinity probe, when the step first sees an input shape,
before anything is compiled for it.
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
    _refuse_running_statistics(model)
    method.validate(model)
    expected = jax.eval_shape(lambda: model.params_state)
    random = method.needs_key or model.has_random_streams()
    compiled: dict = {}

    def compile_for(shape, dtype):
        shaped = model.with_input(shape, dtype)
        method.validate(shaped)

        @jax.jit
        def jitted(params, opt_state, inputs, labels, key):
            dropout_key, method_key = jax.random.split(key)
            bound = shaped.bind(dropout_key) if shaped.has_random_streams() else shaped
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
        return jitted(params, opt_state, inputs, labels, jax.random.key(0) if key is None else key)

    step.model = model
    return step


def _refuse_running_statistics(model) -> None:
    """The engine does not yet carry running statistics through the time loop: a BatchNorm that
    updates them would train on batch statistics and leave stale running averages for evaluation."""
    for layer in model.layers:
        if isinstance(layer, nnx.BatchNorm) and not layer.use_running_average:
            raise ValueError(
                f"{model.module_type} has a BatchNorm in training mode (use_running_average=False); the "
                "engine does not carry running statistics through time yet: freeze them "
                "(BatchNorm(use_running_average=True)) or use scaled weight standardisation.")
