"""The static description of a spiking network, shared by every training method.

A network is N spiking layers and a readout (docs/methods.md §1). Spiking layer l (1-based) receives the sum
of the currents of its *paths*; a path applies a chain of operators (`safjax.ops`) to one source:

    source 0            the network input x[t]
    source k, k < l     spiking layer k at the same step t (feed-forward or skip path)
    source k, k ≥ l     spiking layer k at the previous step t − 1 (feedback path)

The readout is a chain of operators on the last spiking layer, o[t] = readout(s^N[t]).
Every method evaluates the same description with its own signal (spikes, traces, spike
accumulations or rates), so a network is written once and trained by any method.

Parameters are a plain pytree:
``{"layers": [[[op params] per op] per path] per layer, "readout": [op params]}``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from safjax import neurons as neurons_lib

Array = jax.Array
Shape = tuple[int, ...]
Params = dict


@dataclasses.dataclass(frozen=True)
class Path:
    """A chain of operators applied to one source (see the module docstring)."""

    source: int
    ops: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(self.ops))


@dataclasses.dataclass(frozen=True)
class SpikingLayer:
    """A layer of neurons whose input current is the sum of its paths' outputs."""

    paths: tuple[Path, ...]
    neuron: neurons_lib.NeuronModel = dataclasses.field(default_factory=neurons_lib.lif)

    def __post_init__(self):
        object.__setattr__(self, "paths", tuple(self.paths))
        neurons_lib.check_neuron(self.neuron)


def _chain_shape(ops: Sequence, in_shape: Shape) -> Shape:
    shape = tuple(in_shape)
    for op in ops:
        shape = tuple(op.out_shape(shape))
    return shape


@dataclasses.dataclass(frozen=True)
class Network:
    """A spiking network: ``input_shape`` (one example), spiking ``layers`` and a ``readout``."""

    input_shape: Shape
    layers: tuple[SpikingLayer, ...]
    readout: tuple = ()
    layer_shapes: tuple[Shape, ...] = dataclasses.field(init=False, repr=False)
    num_classes: int = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "readout", tuple(self.readout))
        if not self.layers:
            raise ValueError("Network: `layers` is empty; a spiking network needs ≥ 1 layer.")
        shapes: list[Shape] = [self.input_shape]
        for index, layer in enumerate(self.layers, start=1):
            forward = [p for p in layer.paths if p.source < index]
            if not forward:
                raise ValueError(
                    f"Network: layer {index} has no path from an earlier layer or the input "
                    "(every layer needs one path with source < its own index)."
                )
            for path in layer.paths:
                if not 0 <= path.source <= len(self.layers):
                    raise ValueError(
                        f"Network: layer {index} has a path from source {path.source}; valid "
                        f"sources are 0 (input) to {len(self.layers)} (the last layer)."
                    )
            shape = _chain_shape(forward[0].ops, shapes[forward[0].source])
            shapes.append(shape)
        for index, layer in enumerate(self.layers, start=1):
            for path in layer.paths:
                got = _chain_shape(path.ops, shapes[path.source])
                if got != shapes[index]:
                    raise ValueError(
                        f"Network: layer {index}'s path from source {path.source} produces "
                        f"shape {got}, but the layer's current has shape {shapes[index]}; "
                        "paths into one layer must agree."
                    )
        out = _chain_shape(self.readout, shapes[-1])
        if len(out) != 1:
            raise ValueError(
                f"Network: the readout must end in a vector of class scores, got shape {out}; "
                "end it with Flatten/GlobalAvgPool and Dense."
            )
        object.__setattr__(self, "layer_shapes", tuple(shapes[1:]))
        object.__setattr__(self, "num_classes", out[0])

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def all_ops(self):
        """Every operator in the network, layers first, then the readout."""
        for layer in self.layers:
            for path in layer.paths:
                yield from path.ops
        yield from self.readout

    def num_synaptic_ops(self) -> int:
        """Weighted operators (dense/conv), counted once each."""
        return sum(1 for op in self.all_ops() if op.synaptic)


def init_params(net: Network, key: Array, dtype=jnp.float32) -> Params:
    """Initialise every operator's parameters; returns the params pytree."""
    shapes = (net.input_shape,) + net.layer_shapes
    layers = []
    for index, layer in enumerate(net.layers, start=1):
        layer_params = []
        for path in layer.paths:
            shape, path_params = shapes[path.source], []
            for op in path.ops:
                key, sub = jax.random.split(key)
                path_params.append(op.init(sub, shape, dtype))
                shape = op.out_shape(shape)
            layer_params.append(path_params)
        layers.append(layer_params)
    readout, shape = [], shapes[-1]
    for op in net.readout:
        key, sub = jax.random.split(key)
        readout.append(op.init(sub, shape, dtype))
        shape = op.out_shape(shape)
    return {"layers": layers, "readout": readout}


def apply_chain(ops: Sequence, params: Sequence, x: Array, bias_scale) -> Array:
    """Apply a chain of operators in order."""
    for op, op_params in zip(ops, params):
        x = op.apply(op_params, x, bias_scale)
    return x


def layer_current(
    layer: SpikingLayer,
    layer_params: Sequence,
    signal_of: Callable[[int], Array],
    bias_scale,
) -> Array:
    """Σ over paths of chain(signal_of(source)): the layer's input current, [B, *shape]."""
    currents = [
        apply_chain(path.ops, path_params, signal_of(path.source), bias_scale)
        for path, path_params in zip(layer.paths, layer_params)
    ]
    return sum(currents[1:], currents[0])


def readout(net: Network, params: Params, x: Array, bias_scale) -> Array:
    """The readout chain on the last layer's signal, [B, *shape_N] → [B, num_classes]."""
    return apply_chain(net.readout, params["readout"], x, bias_scale)


def uniform_leak(net: Network, method: str) -> float:
    """The network's single λ; methods built on traces need one λ for every layer."""
    from safjax.engine import validation

    return validation.uniform_leak(net, method)


def require_linear_operators(net: Network, method: str) -> None:
    """Refuse operators that break the accumulation identity (docs/methods.md §4)."""
    bad = sorted({type(op).__name__ for op in net.all_ops() if not op.linear})
    if bad:
        raise ValueError(
            f"{method} needs linear, time-invariant operators between neuron layers, but the "
            f"network contains {bad}; replace max-pooling with AvgPool (and per-step batch norm "
            "with scaled weight standardisation), or train with 'bptt' / 'tbptt'."
        )


def check_inputs(net: Network, inputs: Array, labels: Array | None = None) -> None:
    """Validate time-major floating-point ``inputs`` [T, B, *input_shape] and integer ``labels``
    [B] in [0, num_classes) (``labels=None``: inputs only, e.g. for inference). Concrete (not
    traced) inputs must be finite and concrete labels in range: one reduction each, no copy."""
    expected = ("T", "B") + net.input_shape
    if inputs.ndim != len(expected) or tuple(inputs.shape[2:]) != net.input_shape:
        raise ValueError(
            f"`inputs` must be time-major with shape {expected}, got {tuple(inputs.shape)}; "
            "use safjax.encoding.direct(images, T) for static images."
        )
    if inputs.shape[0] < 1:
        raise ValueError("`inputs` has T = 0 time steps; T must be ≥ 1.")
    if not jnp.issubdtype(inputs.dtype, jnp.floating):
        raise ValueError(
            f"`inputs` must be floating point (spikes or currents), got dtype {inputs.dtype}; convert "
            "with inputs.astype(jnp.float32) (images scaled to [0, 1], e.g. / 255)."
        )
    if _is_concrete(inputs):
        _check_finite(inputs)
    if labels is None:
        return
    if labels.ndim == 1 and labels.shape[0] == inputs.shape[0] != inputs.shape[1]:
        raise ValueError(
            f"`inputs` look batch-major [B, T, ...] = {tuple(inputs.shape)} for {labels.shape[0]} labels; "
            f"expected time-major {expected}: pass jnp.swapaxes(inputs, 0, 1)."
        )
    if labels.shape != (inputs.shape[1],):
        raise ValueError(
            f"`labels` must have shape (B,) = ({inputs.shape[1]},), got {tuple(labels.shape)}."
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"`labels` must be integer class indices, got dtype {labels.dtype}.")
    if _is_concrete(labels):
        check_label_range(labels, net.num_classes)


def _is_concrete(x) -> bool:
    """A value this process can read: not traced, and (multi-host global arrays) fully
    addressable; the trainer checks its own data."""
    return not isinstance(x, jax.core.Tracer) and getattr(x, "is_fully_addressable", True)


def _check_finite(inputs) -> None:
    """Refuse NaN/inf inputs (they would turn every parameter NaN in one update). A NumPy array is
    checked on the host, a JAX array by one reduction on its device (a scalar comes back)."""
    import numpy as np

    if isinstance(inputs, np.ndarray):
        finite = np.isfinite(inputs).all()
    else:
        with jax.ensure_compile_time_eval():  # a concrete array seen while tracing (a closure constant)
            finite = jnp.isfinite(inputs).all()
    if not bool(finite):
        values = np.asarray(inputs)
        raise ValueError(
            f"`inputs` hold {int(np.isnan(values).sum())} NaN and {int(np.isinf(values).sum())} infinite "
            "value(s): training on them makes every parameter NaN; clean or clip the data first."
        )


def check_label_range(labels, num_classes: int, what: str = "`labels`") -> None:
    """Refuse concrete labels outside [0, num_classes) (they would give a silent NaN loss)."""
    import numpy as np

    values = np.asarray(labels)
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        bad = values[(values < 0) | (values >= num_classes)]
        raise ValueError(
            f"{what} must be class indices in [0, {num_classes}) ({num_classes} classes), "
            f"got {bad.size} outside it (e.g. {int(bad[0])}, range {int(values.min())}..{int(values.max())})."
        )


def check_params(expected, params, hint: str = "params of another model?") -> None:
    """Refuse ``params`` whose tree structure or leaf shapes differ from ``expected`` (a pytree of
    arrays or shape structs, e.g. ``jax.eval_shape`` of the initialiser), in one line ending in
    ``hint``."""
    check_tree(expected, params, "the parameter tree does not match the network", hint)


def check_tree(expected, tree, what: str, hint: str) -> None:
    """Refuse a pytree whose structure or leaf shapes differ from ``expected``'s: one line,
    ``what``, the first difference, then ``(hint)``. ``expected``'s leaves have ``.shape``."""
    expected_leaves, expected_tree = jax.tree_util.tree_flatten(expected)
    if jax.tree_util.tree_structure(tree) != expected_tree:
        want, got = (
            [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(t)] for t in (expected, tree)
        )
        first = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
        if want == got:
            difference = "the same paths in other containers (e.g. tuple for list)"
        else:
            difference = (f"first difference: expected {want[first] if first < len(want) else 'nothing'}, "
                          f"got {got[first] if first < len(got) else 'nothing'}")
        raise ValueError(
            f"{what}: another layout ({len(got)} arrays given, {len(want)} expected; {difference}) ({hint})."
        )
    for path_leaf, want in zip(jax.tree_util.tree_leaves_with_path(tree), expected_leaves):
        path, leaf = path_leaf
        if tuple(jnp.shape(leaf)) != tuple(want.shape):
            raise ValueError(
                f"{what}: {jax.tree_util.keystr(path)} has shape {tuple(jnp.shape(leaf))}, "
                f"expected {tuple(want.shape)} ({hint})."
            )


def map_operators(net: Network, fn: Callable) -> Network:
    """A copy of ``net`` with every operator replaced by ``fn(op)`` (e.g. to change a static option)."""
    layers = tuple(
        SpikingLayer(tuple(Path(p.source, tuple(map(fn, p.ops))) for p in layer.paths), layer.neuron)
        for layer in net.layers
    )
    return Network(net.input_shape, layers, tuple(map(fn, net.readout)))
