"""Any Flax NNX model as a step model (docs/methods.md §10.1).

The model is a per-time-step `nnx.Module`: ``__call__(x_t)`` maps one step's input [B, ...] to
its output [B, C], built from any Flax layers and functions and `safjax.nn` cells. The engine
splits it once (``graphdef``, the trainable ``nnx.Param`` state, and the rest), and every step of
every method is ``merge → call → read the cells`` under `jax.lax.scan`, the cells in the method's
mode. The model's own ``__call__`` does not change with the method.

A Flax model does not weight its biases by c_t, so the engine feeds it normalised signals
(`modes`): SAF's one evaluation per operator per step is exact for every map between cells that
is affine in their signals (§10.3), which `affinity.check` verifies before the first step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from safjax import conv as conv_lib
from safjax.engine import affinity, runtime as runtime_lib


def _is_cell(node) -> bool:
    from safjax import nn

    return isinstance(node, nn.Neuron)


def _path_name(path) -> str:
    return ".".join(str(part) for part in path) or "<model>"


class FlaxModel:
    """A Flax model's step model. ``FlaxModel(module)`` knows the cells; `with_input` adds the
    shapes that one input shape gives them (what a method's step needs)."""

    scales_bias = False

    def __init__(self, module: nnx.Module, input_shape=None, dtype=jnp.float32, rng_state=None):
        self.module_type = type(module).__name__
        self.graphdef, self.params_state, self.rest = nnx.split(module, nnx.Param, ...)
        cells = [(path, node) for path, node in nnx.iter_graph(module) if _is_cell(node)]
        if not cells:
            raise ValueError(
                f"{self.module_type} has no safjax.nn neuron cell (LIF, IF, Neuron): a spiking model needs "
                "at least one, e.g. self.lif = safjax.nn.LIF() and s = self.lif(self.fc(x)).")
        self.cell_paths = tuple(path for path, _ in cells)
        self.cell_names = tuple(repr(_path_name(path)) for path in self.cell_paths)
        self.neurons = tuple(node.config for _, node in cells)
        self.declared_shapes = tuple(getattr(node, "shape", None) for _, node in cells)
        self.layers = tuple(node for path, node in nnx.iter_graph(module) if isinstance(node, nnx.Module))
        self.rng_state = rng_state
        # Running statistics a BatchNorm in training mode updates every step: carried through time by
        # the engine (`steps.ModelState`), bound per minibatch (`bind_model_state`).
        self.stat_paths = tuple(path for path, value in nnx.to_flat_state(self.rest)
                                if isinstance(value, nnx.BatchStat))
        self.carries_state = any(isinstance(layer, nnx.BatchNorm) and not layer.use_running_average
                                 for layer in self.layers)
        self.model_state = None
        self.input_shape, self.dtype = input_shape, dtype
        self.cell_shapes, self.num_classes = None, None  # known once an input shape is (`with_input`)
        if input_shape is not None:
            self.cell_shapes, self.num_classes = _discover(self, tuple(input_shape), dtype)

    def with_input(self, input_shape, dtype) -> "FlaxModel":
        """This model with the cell shapes of per-example inputs of ``input_shape``."""
        return _with_input(self, tuple(input_shape), jnp.dtype(dtype))

    def bind(self, key) -> "FlaxModel":
        """Inside a traced step: this model with every random stream (dropout) re-seeded from
        ``key`` and read from its start at every time step, so a dropout mask is drawn once per
        minibatch and held over T (docs/methods.md §1.7)."""
        paths = [path for path, value in nnx.to_flat_state(self.rest) if isinstance(value, nnx.RngKey)]
        keys = jax.random.split(key, max(len(paths), 1))
        rng_state = {path: keys[i] for i, path in enumerate(paths)}
        rng_state.update({path: jnp.zeros_like(value.get_value()) for path, value in nnx.to_flat_state(self.rest)
                          if isinstance(value, nnx.RngCount)})
        return self._replace(rng_state=rng_state)

    def initial_model_state(self) -> tuple:
        """The running statistics a minibatch starts from: the bound ones, else the module's."""
        if self.model_state is not None:
            return self.model_state
        values = dict(nnx.to_flat_state(self.rest))
        return tuple(values[path].get_value() for path in self.stat_paths)

    def bind_model_state(self, stats: tuple) -> "FlaxModel":
        """This model with its running statistics set to ``stats`` (in `stat_paths` order)."""
        return self._replace(model_state=tuple(stats))

    def _replace(self, **changes) -> "FlaxModel":
        """A copy of this model with some attributes changed (the module is not split again)."""
        copy = object.__new__(FlaxModel)
        copy.__dict__.update(self.__dict__, **changes)
        return copy

    def has_random_streams(self) -> bool:
        return any(isinstance(v, nnx.RngState) for _, v in nnx.to_flat_state(self.rest))

    def merge(self, params, model_state=None) -> nnx.Module:
        """The module with ``params`` (the trainable state), this minibatch's random streams and
        ``model_state`` (running statistics in `stat_paths` order; default: the bound or the module's)."""
        rest = self.rest
        overrides = dict(self.rng_state or {})
        if model_state is not None or self.model_state is not None:
            overrides.update(zip(self.stat_paths, self.initial_model_state() if model_state is None else model_state))
        if overrides:
            flat = [(path, value.replace(overrides[path]) if path in overrides else value)
                    for path, value in nnx.to_flat_state(rest)]
            rest = nnx.from_flat_state(flat)
        return nnx.merge(self.graphdef, params, rest, copy=True)  # fresh variables at this trace level

    def apply(self, params, x_t, runtime):
        """One step: x_t [B, *input_shape] → o[t] [B, C], the cells in the runtime's mode."""
        module = self.merge(params, runtime.model_state)
        _fast_convs_on_cpu(module)
        for index, path in enumerate(self.cell_paths):
            runtime.cell_indices[id(_get(module, path))] = index
        output = module(x_t)
        if self.carries_state:
            values = dict(nnx.to_flat_state(nnx.state(module, nnx.BatchStat)))
            runtime.new_model_state = tuple(values[path].get_value() for path in self.stat_paths)
        return output

    def describe_cells(self, indices) -> str:
        return f"cells {', '.join(self.cell_names[i] for i in indices)}"

    def check_affine(self, method: str) -> None:
        affinity.check_structure(self, method)
        if self.input_shape is not None:
            affinity.check(self, method)


def _fast_convs_on_cpu(module) -> None:
    """On XLA:CPU, every `nnx.Conv` computes its weight gradient as a canonical NHWC convolution
    (`safjax.conv.flax_conv_general_dilated`): ~50× faster inside the time loop, values unchanged."""
    if jax.default_backend() != "cpu":
        return
    for _, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Conv) and node.conv_general_dilated is jax.lax.conv_general_dilated:
            node.conv_general_dilated = conv_lib.flax_conv_general_dilated


def _get(module, path):
    for part in path:
        module = module[part] if isinstance(part, int) else getattr(module, part)
    return module


@functools.lru_cache(maxsize=64)
def _with_input(model: FlaxModel, input_shape, dtype) -> FlaxModel:
    shaped = model._replace(input_shape=input_shape, dtype=dtype)
    shaped.cell_shapes, shaped.num_classes = _discover(shaped, input_shape, dtype)
    return shaped


class _Discovery:
    """The mode of a shape-only step: each cell records its current's shape and passes zeros on."""

    def step(self, neuron, state, current, context, index):
        return jax.ShapeDtypeStruct(current.shape, current.dtype), jnp.zeros_like(current), None


class _DiscoveryRuntime(runtime_lib.Runtime):
    """A feedback read gives zeros of the cell's shape: the one it fired with at this step, or the
    one it declares (``LIF(shape=...)``) when it has not fired yet."""

    def previous(self, index: int):
        shape = self.new_states[index] if self.new_states[index] is not None else self.states[index]
        if shape is None:
            raise _NeedsShape()
        return jnp.zeros(shape.shape, shape.dtype)


class _NeedsShape(Exception):
    pass


def _discover(model: FlaxModel, input_shape, dtype):
    """Per-example cell shapes and the number of classes, from one shape-only step (nothing runs)."""
    batch = 2

    def step(params, x_t):
        declared = tuple(None if shape is None else jax.ShapeDtypeStruct((batch,) + tuple(shape), dtype)
                         for shape in model.declared_shapes)
        runtime = _DiscoveryRuntime(_Discovery(), model.neurons, declared, None, model.cell_names)
        with runtime_lib.activate(runtime):
            output = model.apply(params, x_t, runtime)
        states, _, _ = runtime.finish()
        return output, states

    try:
        output, states = jax.eval_shape(step, model.params_state, jax.ShapeDtypeStruct((batch,) + input_shape, dtype))
    except _NeedsShape:
        raise ValueError(
            f"{model.module_type}: a cell is read at t − 1 (previous()) before it first fires in the step; "
            "give that cell its per-example shape, e.g. safjax.nn.LIF(shape=(128,)).") from None
    if len(output.shape) != 2 or output.shape[0] != batch:
        raise ValueError(
            f"{model.module_type}.__call__ must map one step's input [B, ...] to class scores [B, C], got "
            f"shape {tuple(output.shape)} for B = {batch}; end it with a readout layer, e.g. nnx.Linear(F, C).")
    shapes = tuple(tuple(s.shape[1:]) for s in states)
    return shapes, int(output.shape[1])
