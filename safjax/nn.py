"""Flax NNX modules: thin wrappers that hold parameters and describe a `safjax.Network`.

A user writes a network once as a `Sequential` of operator and neuron modules, then trains its
pure description (``model.network``, ``model.params()``) with any method by name:

    model = nn.Sequential(nn.Flatten(), nn.Dense(64, 128, rngs=rngs), nn.LIF(),
                          nn.Dense(128, 10, rngs=rngs), input_shape=(8, 8, 1))

In a `Sequential`, the operators before a neuron module form that layer's main path (from the
previous layer); `Skip` and `Feedback` modules placed before a neuron add paths into it; the
operators after the last neuron are the readout. Layers are numbered from 1; source 0 is the
input. All computation lives in the pure core (`safjax.ops`, `safjax.neurons`, the methods).
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
from flax import nnx

from safjax import dropout as dropout_lib
from safjax import network as network_lib
from safjax import neurons as neurons_lib
from safjax import ops as ops_lib
from safjax import simulate
from safjax import surrogates as surrogates_lib
from safjax.engine import cell as cell_lib

Array = jax.Array


class Operator(nnx.Module):
    """A synaptic operator (``self.op``, pure) and its parameters as `nnx.Param` attributes."""

    def __init__(self, op, in_shape: tuple[int, ...] = (), rngs: nnx.Rngs | None = None, dtype=jnp.float32):
        self.op = op
        self.param_names = ()
        if op.synaptic:
            if rngs is None:
                raise ValueError(f"{type(op).__name__} has parameters: pass `rngs=nnx.Rngs(seed)`.")
            params = op.init(rngs.params(), tuple(in_shape), dtype)
            self.param_names = tuple(sorted(params))
            for name in self.param_names:
                setattr(self, name, nnx.Param(params[name]))

    def params(self) -> dict[str, Array]:
        return {name: getattr(self, name).get_value() for name in self.param_names}

    def load_params(self, params: dict[str, Array]) -> None:
        for name in self.param_names:
            getattr(self, name).set_value(params[name])

    def __call__(self, x: Array, bias_scale=1.0) -> Array:
        """Apply to one time step, x [B, ...]."""
        return self.op.apply(self.params(), x, bias_scale)


class Dense(Operator):
    """y = x W + b, x [B, in_features] → [B, out_features]."""

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
                 rngs: nnx.Rngs, dtype=jnp.float32):
        super().__init__(ops_lib.Dense(out_features, use_bias), (in_features,), rngs, dtype)


class ScaledWSDense(Operator):
    """Dense with scaled weight standardisation and a learnable gain."""

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
                 rngs: nnx.Rngs, dtype=jnp.float32):
        super().__init__(ops_lib.ScaledWSDense(out_features, use_bias), (in_features,), rngs, dtype)


def _conv_in_shape(in_features: int) -> tuple[int, int, int]:
    # The kernel shape depends only on the channel count; any spatial size ≥ 1 initialises it.
    return (1, 1, in_features)


class Conv(Operator):
    """3×3 (or ``kernel_size``) convolution, NHWC, 'SAME' padding by default."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, *,
                 stride: int = 1, padding: str = "SAME", use_bias: bool = True,
                 swapped_weight_grad: bool | None = None, rngs: nnx.Rngs, dtype=jnp.float32):
        op = ops_lib.Conv(out_features, kernel_size, stride, padding, use_bias, swapped_weight_grad)
        super().__init__(op, _conv_in_shape(in_features), rngs, dtype)


class ScaledWSConv(Operator):
    """Convolution with scaled weight standardisation (docs/methods.md §8) and a learnable gain."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, *,
                 stride: int = 1, padding: str = "SAME", use_bias: bool = True,
                 swapped_weight_grad: bool | None = None, rngs: nnx.Rngs, dtype=jnp.float32):
        op = ops_lib.ScaledWSConv(
            out_features, kernel_size, stride, padding, use_bias, swapped_weight_grad
        )
        super().__init__(op, _conv_in_shape(in_features), rngs, dtype)


class AvgPool(Operator):
    def __init__(self, window: int = 2):
        super().__init__(ops_lib.AvgPool(window))


class MaxPool(Operator):
    """Max pooling — BPTT/TBPTT only; SAF, OTTT and SR refuse it."""

    def __init__(self, window: int = 2):
        super().__init__(ops_lib.MaxPool(window))


class GlobalAvgPool(Operator):
    def __init__(self):
        super().__init__(ops_lib.GlobalAvgPool())


class Flatten(Operator):
    def __init__(self):
        super().__init__(ops_lib.Flatten())


class Scale(Operator):
    def __init__(self, factor: float):
        super().__init__(ops_lib.Scale(float(factor)))


class Dropout(Operator):
    """Neuron dropout on the spikes this path reads, one mask per minibatch held over T
    (docs/methods.md §1.7); the identity at evaluation.

    Training steps (`safjax.make_train_step`) always drop, with the step's key. Called as a module
    it follows Flax's ``deterministic`` convention (``model.eval()`` sets it, ``model.train()``
    clears it; default: training): in training mode it draws a mask from ``rngs`` (given here or
    to the call; ``nnx.Rngs`` use their ``dropout`` stream) — a new one per call of the
    module, one held over T per call of a `Sequential`; deterministic, it is the identity.
    """

    def __init__(self, rate: float = 0.1, *, deterministic: bool = False,
                 rngs: nnx.Rngs | nnx.RngStream | None = None):
        super().__init__(dropout_lib.Dropout(rate))
        self.deterministic = deterministic
        if isinstance(rngs, nnx.Rngs):
            self.rngs = rngs["dropout"].fork()
        elif isinstance(rngs, nnx.RngStream):
            self.rngs = rngs.fork()
        else:
            self.rngs = nnx.data(None)

    @property
    def training(self) -> bool:
        return not self.deterministic and self.op.rate > 0

    def __call__(self, x: Array, bias_scale=1.0, *, rngs=None) -> Array:
        """One step, x [B, ...]: x masked (training mode) or x itself (deterministic)."""
        if not self.training:
            return x
        key = _dropout_key(rngs if rngs is not None else self.rngs)
        return dataclasses.replace(self.op, key=key).apply({}, x, bias_scale)


def _dropout_key(rngs) -> Array:
    """A key from ``nnx.Rngs`` (its ``dropout`` stream), an ``nnx.RngStream`` or a key itself."""
    if rngs is None:
        raise ValueError(
            "nn.Dropout is in training mode (the default, or after model.train()) and has no random "
            "numbers: pass rngs=nnx.Rngs(dropout=seed) (to the call or to nn.Dropout), or call "
            "model.eval() for evaluation.")
    if isinstance(rngs, nnx.Rngs):
        return rngs.dropout()
    return rngs() if isinstance(rngs, nnx.RngStream) else rngs


class Upsample(Operator):
    def __init__(self, factor: int = 2):
        super().__init__(ops_lib.Upsample(factor))


class Neuron(nnx.Module):
    """A layer of neurons of any model of the protocol in `safjax.neurons.base` (docs/methods.md §1.2),
    e.g. ``Neuron(safjax.neurons.lif(0.9))``; `LIF` and `IF` are the usual shorthands.

    A cell that sits among Flax layers (docs/methods.md §10.1): in a model's ``__call__(x_t)``,
    ``s = self.lif1(self.fc1(x_t))`` fires it for one step, I[t] [B, ...] → s[t]; ``self.lif3.previous()``
    reads its spikes of t − 1 (a feedback path: read it before the cell fires at t). Trained by a method
    (`safjax.make_train_step`), the engine carries its state and sets what it computes (spikes,
    accumulations, traces); stepped by hand, its state is an `engine.cell.CellState` variable that starts
    at zero and `safjax.nn.reset(model)` clears. In a `Sequential` it marks the end of a spiking layer.

    Args:
      model: the neuron model.
      shape: the per-example shape of the layer, needed only by a cell read with ``previous()`` before
        it first fires in the step.
    """

    def __init__(self, model: neurons_lib.NeuronModel, shape: tuple[int, ...] | None = None):
        neurons_lib.check_neuron(model)
        self.config = model
        self.shape = None if shape is None else tuple(int(n) for n in shape)
        self.state = cell_lib.CellState(None)

    def __call__(self, *args):
        """``cell(current)``: one step of the cell, I[t] [B, ...] → s[t] (see the class docstring).
        ``cell(state, current)``: the pure step, (state[t−1], I[t]) → (state[t], s[t]); ``state=None``
        starts from zero."""
        if len(args) == 1:
            return cell_lib.fire(self, args[0])
        if len(args) != 2:
            raise ValueError(f"{type(self).__name__} takes (current) or (state, current), got {len(args)} arguments.")
        state, current = args
        if state is None:
            state = self.config.init_state(current.shape, current.dtype)
        return self.config.step(state, current)

    def previous(self) -> Array:
        """The cell's signal at t − 1, [B, ...] (a feedback path)."""
        return cell_lib.previous(self)


class LIF(Neuron):
    """A layer of LIF neurons (docs/methods.md §1.2). Defaults: λ = 0.5 (τ = 2), V_th = 1, soft reset,
    sigmoid surrogate with α = 4."""

    def __init__(self, leak: float = 0.5, threshold: float = 1.0, reset: str = "soft",
                 detach_reset: bool = False, surrogate: surrogates_lib.Surrogate | None = None,
                 shape: tuple[int, ...] | None = None):
        super().__init__(neurons_lib.lif(leak, threshold, reset, detach_reset, surrogate), shape)


class IF(LIF):
    """Integrate-and-fire neurons: LIF with λ = 1."""

    def __init__(self, threshold: float = 1.0, reset: str = "soft", detach_reset: bool = False,
                 surrogate: surrogates_lib.Surrogate | None = None, shape: tuple[int, ...] | None = None):
        super().__init__(1.0, threshold, reset, detach_reset, surrogate, shape)


reset = cell_lib.reset


class _ExtraPath(nnx.Module):
    def __init__(self, source: int, *operators: Operator):
        if not isinstance(source, int):
            raise ValueError(f"{type(self).__name__}: `source` must be an int, got {source!r}.")
        for operator in operators:
            if not isinstance(operator, Operator):
                raise ValueError(
                    f"{type(self).__name__}: paths hold operator modules only, got {operator!r}."
                )
        self.source = source
        self.operators = nnx.List(list(operators))


class Skip(_ExtraPath):
    """Adds a path from ``source`` (0 = input, k = spiking layer k, same step) into the next
    neuron's current: a residual sum of currents."""


class Feedback(_ExtraPath):
    """Adds a path from spiking layer ``source`` at step t − 1 (−1 = the last layer) into the
    next neuron's current (e.g. VGG-F's feedback to layer 1)."""


class Sequential(nnx.Module):
    """Operators, neurons, `Skip` and `Feedback` in order; see the module docstring.

    Attributes:
      network: the pure `safjax.Network` this model describes (hashable, static).
    """

    def __init__(self, *modules: nnx.Module, input_shape: tuple[int, ...]):
        self.modules = nnx.List(list(modules))
        layers, locations = [], []  # locations in the params tree, in `_walk_order`
        chain: list[Operator] = []
        extras: list[_ExtraPath] = []
        pending_feedback = []
        for module in modules:
            if isinstance(module, Neuron):
                index = len(layers) + 1
                paths = [network_lib.Path(index - 1, tuple(op.op for op in chain))]
                locations += [("layers", index - 1, 0, p) for p in range(len(chain))]
                for j, extra in enumerate(extras, start=1):
                    source = extra.source
                    if isinstance(extra, Feedback):
                        pending_feedback.append((index, j))
                    elif not 0 <= source < index:
                        raise ValueError(
                            f"Skip before layer {index}: `source` must be 0 (input) to "
                            f"{index - 1}, got {source}; use Feedback for later layers."
                        )
                    paths.append(network_lib.Path(source, tuple(o.op for o in extra.operators)))
                    locations += [("layers", index - 1, j, p) for p in range(len(extra.operators))]
                layers.append(network_lib.SpikingLayer(tuple(paths), module.config))
                chain, extras = [], []
            elif isinstance(module, _ExtraPath):
                extras.append(module)
            elif isinstance(module, Operator):
                chain.append(module)
            else:
                raise ValueError(
                    f"Sequential accepts safjax.nn modules only, got a {type(module).__name__}; to use Flax "
                    "layers, write the model as a Flax module that steps one time step (README: 'Bring your "
                    "own Flax model'): safjax.make_train_step trains it with every method.")
        if extras:
            raise ValueError("Sequential: a Skip/Feedback must come before a neuron module (Neuron, LIF, IF).")
        num_layers = len(layers)
        for index, j in pending_feedback:
            path = layers[index - 1].paths[j]
            source = path.source if path.source >= 0 else num_layers + 1 + path.source
            if not index <= source <= num_layers:
                raise ValueError(
                    f"Feedback into layer {index}: `source` must be a layer ≥ {index} (or −1 for "
                    f"the last), got {path.source}; use Skip for earlier layers."
                )
            new_paths = list(layers[index - 1].paths)
            new_paths[j] = network_lib.Path(source, path.ops)
            layers[index - 1] = network_lib.SpikingLayer(tuple(new_paths), layers[index - 1].neuron)
        locations += [("readout", p) for p in range(len(chain))]
        self.network = network_lib.Network(
            tuple(input_shape), tuple(layers), tuple(op.op for op in chain)
        )
        self._locations = tuple(locations)
        self._check_parameter_shapes()

    def _check_parameter_shapes(self) -> None:
        """Each operator module's parameters must fit the shape flowing into it."""
        expected = jax.eval_shape(
            lambda key: network_lib.init_params(self.network, key), jax.random.PRNGKey(0)
        )
        for module, location in self._slots():
            want = {k: v.shape for k, v in _get(expected, location).items()}
            got = {k: v.shape for k, v in module.params().items()}
            if want != got:
                raise ValueError(
                    f"{type(module).__name__} at {location} has parameter shapes {got}, but its "
                    f"input needs {want}; check its in_features against the previous layer."
                )

    def _slots(self):
        """(operator module, params-tree location) pairs, in the order `__init__` laid them out."""
        return list(zip(self._walk_order(), self._locations))

    def _walk_order(self):
        order, chain, extras = [], [], []
        for module in self.modules:
            if isinstance(module, Neuron):
                order.extend(chain)
                for extra in extras:
                    order.extend(extra.operators)
                chain, extras = [], []
            elif isinstance(module, _ExtraPath):
                extras.append(module)
            else:
                chain.append(module)
        return order + chain

    def params(self) -> network_lib.Params:
        """The params pytree of ``self.network`` (see `safjax.network`)."""
        tree = {
            "layers": [[[{} for _ in path.ops] for path in layer.paths] for layer in self.network.layers],
            "readout": [{} for _ in self.network.readout],
        }
        for module, location in self._slots():
            _set(tree, location, module.params())
        return tree

    def load_params(self, params: network_lib.Params) -> None:
        """Write the network's params pytree (e.g. after training) back into the modules; params
        of another network, or a method's larger tree (TL-BPTT's heads), are refused in one line."""
        extra = isinstance(params, dict) and set(params) != {"layers", "readout"}
        network_lib.check_params(self.params(), params, hint=(
            "params with a method's extra parts, e.g. TL-BPTT's auxiliary heads? pass "
            "method.network_params(params)" if extra else "params of another model?"))
        for module, location in self._slots():
            module.load_params(_get(params, location))

    def __call__(self, inputs: Array, *, rngs=None) -> Array:
        """Spikes forward: time-major inputs [T, B, *input_shape] → readout o[t], [T, B, C].

        Dropout modules in training mode (the default; `model.train()`) drop with one mask per call
        held over T, from ``rngs`` or their own; after ``model.eval()`` they are the identity.
        """
        network_lib.check_inputs(self.network, inputs)
        # Both layouts have the same rank, so this is a guess, hence a warning: minibatches (≥ 16
        # examples) are usually larger than T, and time-major inference usually has few examples.
        if inputs.shape[0] >= 16 and inputs.shape[0] > inputs.shape[1] > 1:
            warnings.warn(
                f"Sequential: inputs {tuple(inputs.shape)} are read time-major, as T = {inputs.shape[0]} "
                f"steps of B = {inputs.shape[1]} examples; if they are batch-major [B, T, ...], pass "
                "jnp.swapaxes(inputs, 0, 1).", stacklevel=2)
        outputs, _ = simulate.run(self._with_dropout_masks(rngs), self.params(), inputs)
        return outputs

    def _with_dropout_masks(self, rngs):
        """``self.network`` with each training-mode Dropout bound to one key (its own salt)."""
        dropouts = [m for m in self._walk_order() if isinstance(m, Dropout)]
        if not any(m.training for m in dropouts):
            return self.network
        if rngs is None:
            rngs = next((m.rngs for m in dropouts if m.training and m.rngs is not None), None)
        key = _dropout_key(rngs)
        training = iter([m.training for m in dropouts])  # network.all_ops order = `_walk_order`
        salt = iter(range(len(dropouts)))

        def bind(op):
            if not isinstance(op, dropout_lib.Dropout):
                return op
            live, index = next(training), next(salt)
            return dataclasses.replace(op, key=key, salt=index) if live else op

        return network_lib.map_operators(self.network, bind)


def _get(tree, location):
    for key in location:
        tree = tree[key]
    return tree


def _set(tree, location, value):
    for key in location[:-1]:
        tree = tree[key]
    tree[location[-1]] = value
