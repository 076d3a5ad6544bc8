"""Export a trained network to NIR, the Neuromorphic Intermediate Representation, and import NIR
graphs back (docs/deploy.md; the `nir` package, 1.0.x).

Export (`export`) writes the network the parameters describe at inference — the plain spiking net
of docs/methods.md §1, which SAF/OTTT-trained parameters run unchanged (§4.7) — as NIR nodes:

    Dense / ScaledWSDense   → Affine    weight [out, in] (transposed; standardisation baked in;
                                        rows reordered from our H·W·C flattening to NIR's C·H·W)
    Conv / ScaledWSConv     → Conv2d    weight [C_out, C_in, k, k] (OIHW), symmetric padding
    AvgPool(w)              → SumPool2d(w) and the 1/w² folded into the next weighted operator
    GlobalAvgPool           → SumPool2d(H, W) + Flatten, 1/(H·W) folded likewise
    Scale(k)                → folded into the next weighted operator (a `Scale` node if none follows)
    Flatten                 → Flatten (start_dim 0 of the unbatched C·H·W shape)
    Dropout                 → nothing (the identity at inference, docs/methods.md §1.7)
    LIF, λ < 1              → LIF:  τ = dt/(1 − λ) (Euler) or −dt/ln λ (exact decay), r = 1/(1 − λ),
                                    v_leak = 0, v_threshold = V_th, v_reset = 0
    IF (λ = 1)              → IF:   r = 1/dt, v_threshold = V_th, v_reset = 0

so that NIR's τ·dv/dt = −v + r·I, stepped with ``dt``, is u[t] = λ·u[t−1] + I[t]. Paths are edges:
several into one neuron node are summed, and a feedback path is an edge that closes a cycle (read
one step late). NIR's neurons reset *to* v_reset; the subtractive (soft) reset that SAF and OTTT
train has no NIR form, so a soft-reset network is refused unless ``reset="zero"`` asks for the
approximate export (hard reset to 0), whose accuracy change the export command measures. NIR
fires on v > V_th, safjax on u ≥ V_th: the two differ only when u lands exactly on V_th.

Import (`to_network`) reads those node types back into a `safjax.Network` and its params, with the
hard reset; `read` / `write` wrap `nir.read` / `nir.write`. Upsampling, max-pooling and neurons
other than LIF/IF have no NIR 1.0 node and are refused with the reason.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from safjax import dropout as dropout_lib
from safjax import network as network_lib
from safjax import neurons as neurons_lib
from safjax import ops

DEFAULT_DT = 1e-4  # snnTorch's importer assumes this step; stored in the graph's metadata
DISCRETISATIONS = ("euler", "exact")
RESETS = ("refuse", "zero")
_META = "safjax"


def _nir():
    try:
        import nir
    except ImportError:
        raise ImportError("NIR export needs the `nir` package: pip install nir (it is in requirements.txt).") from None
    return nir


@dataclasses.dataclass
class ExportReport:
    """What `export` did: the graph, and the notes it would print (folded scales, approximations)."""

    graph: object
    folded: list[str]
    approximations: list[str]

    @property
    def node_count(self) -> int:
        return len(self.graph.nodes)


def _chw(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


def _hwc(shape) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


def _symmetric_padding(op: ops.Conv, in_shape) -> int:
    k, stride = op.kernel_size, op.stride
    if op.padding == "VALID":
        return 0
    pads = []
    for size in in_shape[:2]:
        total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    if any(lo != hi for lo, hi in pads) or pads[0] != pads[1]:
        raise ValueError(f"NIR export: Conv with padding='SAME', kernel {k}, stride {stride} on a {in_shape[:2]} "
                         "input pads asymmetrically, which NIR's Conv2d cannot express; use an odd kernel with "
                         "stride 1 or padding='VALID'.")
    return pads[0][0]


def _export_chain(nir, ops_chain, chain_params, in_shape, prefix, folded, fold_scales=True):
    """[(name, node)] for one chain of operators on an input of shape ``in_shape`` (HWC)."""
    nodes, factor, shape, flattened_from = [], 1.0, tuple(in_shape), None
    for index, (op, params) in enumerate(zip(ops_chain, chain_params)):
        name = f"{prefix}.{index}.{type(op).__name__.lower()}"
        if isinstance(op, dropout_lib.Dropout):
            pass
        elif isinstance(op, ops.Scale) and not fold_scales:
            nodes.append((name, nir.Scale(scale=np.full(_chw(shape), op.factor, np.float32))))
        elif isinstance(op, ops.Scale):
            factor *= op.factor
            folded.append(f"{name}: ×{op.factor:g} folded into the next weighted operator")
        elif isinstance(op, (ops.AvgPool, ops.GlobalAvgPool)):
            # An average pool of an h×w window (the whole map for the global one) at stride h×w:
            # AvgPool2d, or SumPool2d with its 1/(h·w) folded into the next weighted operator.
            is_global = isinstance(op, ops.GlobalAvgPool)
            h, w = shape[:2] if is_global else (op.window, op.window)
            pool = nir.SumPool2d if fold_scales else nir.AvgPool2d
            nodes.append((name, pool(kernel_size=np.array([h, w]), stride=np.array([h, w]), padding=np.array([0, 0]))))
            if is_global:
                nodes.append((name + ".flatten", nir.Flatten(input_type={"input": np.array([shape[2], 1, 1])},
                                                             start_dim=0)))
            if fold_scales:
                factor /= h * w
                folded.append(f"{name}: global average pool → SumPool2d + Flatten, 1/{h * w} folded onward" if is_global
                              else f"{name}: average pool → SumPool2d, 1/{h * w} folded into the next weighted operator")
        elif isinstance(op, ops.Flatten):
            nodes.append((name, nir.Flatten(input_type={"input": np.array(_chw(shape))}, start_dim=0)))
            flattened_from = shape if len(shape) == 3 else None
        elif isinstance(op, ops.Dense):
            kernel = np.asarray(op.weight(params), np.float64)  # [in, out], standardised if sWS
            if flattened_from is not None:  # rows in our (h, w, c) order → NIR's (c, h, w)
                h, w, c = flattened_from
                kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
            bias = np.asarray(params["bias"], np.float64) if op.use_bias else np.zeros(kernel.shape[1])
            nodes.append((name, nir.Affine(weight=(factor * kernel).T.astype(np.float32),
                                           bias=bias.astype(np.float32))))
            factor, flattened_from = 1.0, None
        elif isinstance(op, ops.Conv):
            kernel = np.asarray(op.weight(params), np.float64)  # [k, k, C_in, C_out]
            bias = np.asarray(params["bias"], np.float64) if op.use_bias else np.zeros(kernel.shape[-1])
            nodes.append((name, nir.Conv2d(
                input_shape=shape[:2], weight=(factor * kernel).transpose(3, 2, 0, 1).astype(np.float32),
                stride=op.stride, padding=_symmetric_padding(op, shape), dilation=1, groups=1,
                bias=bias.astype(np.float32))))
            factor = 1.0
        else:
            raise ValueError(f"NIR export: {type(op).__name__} has no NIR 1.0 node (NIR has no max-pooling or "
                             "upsampling); train a network without it to export it.")
        shape = tuple(op.out_shape(shape))
    if factor != 1.0:
        nodes.append((f"{prefix}.scale", nir.Scale(scale=np.full(_chw(shape), factor, np.float32))))
    return nodes


def _neuron_node(nir, neuron, shape, dt, discretisation, reset, index, approximations):
    if not isinstance(neuron, neurons_lib.LIFConfig):
        raise ValueError(f"NIR export: layer {index} uses {neuron.describe()}, which NIR 1.0 has no node for; "
                         "only LIF and IF neurons export.")
    if neuron.reset == "soft":
        if reset == "refuse":
            raise ValueError(
                f"NIR export: layer {index} uses the soft (subtractive) reset, which NIR's neurons (reset to a "
                "value) cannot express. Options: reset='zero' (export --reset=zero) for an approximate export "
                "with a hard reset to 0, whose accuracy change the export command measures; or train with "
                "reset='hard' (bptt, tbptt, sltt) for an exact export.")
        approximations.append(f"layer {index}: soft reset exported as a reset to 0 (approximate)")
    full = lambda value: np.full(_chw(shape), value, np.float64)  # noqa: E731 (float64: λ reads back exactly)
    leak, threshold = neuron.leak, neuron.threshold
    if leak == 1.0:
        return nir.IF(r=full(1.0 / dt), v_threshold=full(threshold), v_reset=full(0.0))
    tau = dt / (1.0 - leak) if discretisation == "euler" else -dt / math.log(leak)
    return nir.LIF(tau=full(tau), r=full(1.0 / (1.0 - leak)), v_leak=full(0.0), v_threshold=full(threshold),
                   v_reset=full(0.0))


def export(net: network_lib.Network, params, *, reset: str = "refuse", dt: float = DEFAULT_DT,
           discretisation: str = "euler", fold_scales: bool = True) -> ExportReport:
    """The NIR graph of ``net`` with its (network) ``params``, float32; see the module docstring.

    Args:
      reset: ``"refuse"`` a soft-reset network (the default) or export it with a reset to ``"zero"``
        (approximate).
      dt: the step NIR's continuous-time neurons are discretised with (recorded in the metadata).
      discretisation: how λ maps to τ: ``"euler"`` (λ = 1 − dt/τ, what snnTorch and Norse step with)
        or ``"exact"`` (λ = exp(−dt/τ)).
      fold_scales: fold fixed scales and the pools' 1/w² into the next weighted operator and export
        pools as SumPool2d (the default: the node types snnTorch and Norse import); False keeps
        them as Scale / AvgPool2d nodes, so that `to_network` gives back bit-identical arithmetic.
    """
    if not isinstance(net, network_lib.Network):
        raise ValueError(f"safjax.nir.export exports a safjax.Network (an nn.Sequential model's .network), got "
                         f"{getattr(net, 'module_type', type(net).__name__)}: plain Flax code has no NIR form here.")
    nir = _nir()
    if reset not in RESETS:
        raise ValueError(f"`reset` must be one of {RESETS}, got {reset!r}.")
    if discretisation not in DISCRETISATIONS:
        raise ValueError(f"`discretisation` must be one of {DISCRETISATIONS}, got {discretisation!r}.")
    if not (isinstance(dt, (int, float)) and dt > 0):
        raise ValueError(f"`dt` must be a step > 0, got {dt!r}.")
    params = jax.device_get(params)
    nodes = {"input": nir.Input(input_type=np.array(_chw(net.input_shape)))}
    edges, folded, approximations = [], [], []
    shapes = (net.input_shape,) + net.layer_shapes
    neuron_name = lambda k: "input" if k == 0 else f"layer{k}.neuron"  # noqa: E731
    for index, (layer, layer_params) in enumerate(zip(net.layers, params["layers"]), start=1):
        nodes[neuron_name(index)] = _neuron_node(nir, layer.neuron, shapes[index], dt, discretisation, reset,
                                                 index, approximations)
        for p, (path, path_params) in enumerate(zip(layer.paths, layer_params)):
            chain = _export_chain(nir, path.ops, path_params, shapes[path.source], f"layer{index}.path{p}", folded,
                                  fold_scales)
            names = [neuron_name(path.source)] + [name for name, _ in chain] + [neuron_name(index)]
            nodes.update(chain)
            edges += list(zip(names[:-1], names[1:]))
    chain = _export_chain(nir, net.readout, params["readout"], shapes[-1], "readout", folded, fold_scales)
    nodes.update(chain)
    nodes["output"] = nir.Output(output_type=np.array([net.num_classes]))
    names = [neuron_name(net.num_layers)] + [name for name, _ in chain] + ["output"]
    edges += list(zip(names[:-1], names[1:]))
    if len(set(edges)) < len(edges):
        raise ValueError("NIR export: two paths without operators join the same layers (a duplicate NIR edge).")
    metadata = {f"{_META}_dt": float(dt), f"{_META}_discretisation": discretisation}
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
    return ExportReport(graph, folded, approximations)


# ---------------------------------------------------------------- import


def _meta(graph, key, default):
    value = (graph.metadata or {}).get(f"{_META}_{key}", default)
    return value.decode() if isinstance(value, bytes) else (value.item() if hasattr(value, "item") else value)


def _uniform(array, what: str) -> float:
    values = np.unique(np.asarray(array, np.float64))
    if values.size != 1:
        raise ValueError(f"NIR import: {what} differs between neurons of one layer ({values.size} values); safjax "
                         "layers share one value.")
    return float(values[0])


def _neuron_from_node(nir, node, name, dt, discretisation):
    """(safjax neuron, input gain g): the layer computes u[t] = λ u[t−1] + g·I[t]."""
    if isinstance(node, nir.LIF):
        if np.any(np.asarray(node.v_leak) != 0):
            raise ValueError(f"NIR import: {name} has v_leak ≠ 0, which safjax's LIF has no term for.")
        tau, r = _uniform(node.tau, f"{name}'s tau"), _uniform(node.r, f"{name}'s r")
        leak = 1.0 - dt / tau if discretisation == "euler" else math.exp(-dt / tau)
        gain = r * dt / tau if discretisation == "euler" else r * (1.0 - leak)
    elif isinstance(node, nir.IF):
        leak, gain = 1.0, _uniform(node.r, f"{name}'s r") * dt
    else:
        raise ValueError(f"NIR import: node {name} is a {type(node).__name__}; safjax reads LIF and IF neurons.")
    gain = 1.0 if abs(gain - 1.0) < 1e-9 else gain  # r = 1/(1 − λ) as written by `export`
    if np.any(np.asarray(node.v_reset) != 0):
        raise ValueError(f"NIR import: {name} resets to v_reset ≠ 0; safjax's hard reset goes to 0.")
    if not 0.0 < leak <= 1.0:
        raise ValueError(f"NIR import: {name}'s tau gives the per-step decay λ = {leak:g} at dt = {dt:g}, outside "
                         "(0, 1]; pass the dt the graph was made for.")
    neuron = neurons_lib.lif(leak, _uniform(node.v_threshold, f"{name}'s v_threshold"), reset="hard")
    return neuron, gain


def _import_chain(nir, names, graph, in_shape):
    """(safjax ops, their params) for the NIR nodes ``names`` on an input of shape ``in_shape`` (HWC)."""
    chain, chain_params, shape, flattened_from = [], [], tuple(in_shape), None
    for name in names:
        node = graph.nodes[name]
        new: list[tuple] = []
        if isinstance(node, nir.Affine) or isinstance(node, nir.Linear):
            kernel = np.asarray(node.weight, np.float32).T  # [in, out]
            if flattened_from is not None:
                h, w, c = flattened_from
                kernel = kernel.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)
            bias = np.asarray(node.bias, np.float32) if isinstance(node, nir.Affine) else np.zeros(kernel.shape[1],
                                                                                                     np.float32)
            new.append((ops.Dense(kernel.shape[1]), {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}))
            flattened_from = None
        elif isinstance(node, nir.Conv2d):
            weight = np.asarray(node.weight, np.float32)  # [C_out, C_in, kH, kW]
            k = weight.shape[-1]
            stride, padding = (np.atleast_1d(np.asarray(v)).ravel() for v in (node.stride, node.padding))
            dilation, groups = np.atleast_1d(np.asarray(node.dilation)).ravel(), int(np.asarray(node.groups))
            if weight.shape[-2] != k or len(set(stride)) != 1 or np.any(dilation != 1) or groups != 1:
                raise ValueError(f"NIR import: {name} is a Conv2d safjax does not have (square kernels, equal "
                                 "strides, no dilation or groups).")
            if isinstance(node.padding, str) or padding.dtype.kind in "US":
                mode = str(padding[0]).upper()
            else:
                mode = {0: "VALID", k // 2: "SAME"}.get(int(padding[0]))
                if mode is None or len(set(padding)) != 1 or (mode == "SAME" and (k % 2 == 0 or stride[0] != 1)):
                    raise ValueError(f"NIR import: {name}'s padding {tuple(padding)} is neither 0 nor SAME.")
            op = ops.Conv(weight.shape[0], k, int(stride[0]), mode)
            new.append((op, {"kernel": jnp.asarray(weight.transpose(2, 3, 1, 0)),
                             "bias": jnp.asarray(np.asarray(node.bias, np.float32))}))
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            kernel, stride = np.asarray(node.kernel_size).ravel(), np.asarray(node.stride).ravel()
            if len(set(kernel)) != 1 or not np.array_equal(kernel, stride) or np.any(np.asarray(node.padding) != 0):
                raise ValueError(f"NIR import: {name} pools with kernel {tuple(kernel)} and stride {tuple(stride)}; "
                                 "safjax pools square windows with stride = window and no padding.")
            w = int(kernel[0])
            new.append((ops.AvgPool(w), {}))
            if isinstance(node, nir.SumPool2d):
                new.append((ops.Scale(float(w * w)), {}))
        elif isinstance(node, nir.Flatten):
            new.append((ops.Flatten(), {}))
            flattened_from = shape if len(shape) == 3 else None
        elif isinstance(node, nir.Scale):
            new.append((ops.Scale(_uniform(node.scale, f"{name}'s scale")), {}))
        else:
            raise ValueError(f"NIR import: node {name} is a {type(node).__name__}, which safjax does not read "
                             "inside a path.")
        for op, op_params in new:
            chain.append(op)
            chain_params.append(op_params)
            shape = tuple(op.out_shape(shape))
    return chain, chain_params, shape


def to_network(graph, dt: float | None = None, discretisation: str | None = None):
    """``(net, params)`` of a NIR graph of the node types `export` writes (float32; hard reset).

    ``dt`` and ``discretisation`` default to the values in the graph's metadata (our exports), else
    `DEFAULT_DT` and Euler (what snnTorch assumes)."""
    nir = _nir()
    dt = float(dt if dt is not None else _meta(graph, "dt", DEFAULT_DT))
    discretisation = discretisation or _meta(graph, "discretisation", "euler")
    if discretisation not in DISCRETISATIONS:
        raise ValueError(f"`discretisation` must be one of {DISCRETISATIONS}, got {discretisation!r}.")
    incoming: dict[str, list[str]] = {name: [] for name in graph.nodes}
    outgoing: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        incoming[dst].append(src)
        outgoing[src].append(dst)
    is_neuron = lambda name: isinstance(graph.nodes[name], (nir.LIF, nir.IF))  # noqa: E731
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"NIR import: expected one Input and one Output node, got {inputs} and {outputs}.")

    def chain_to(name):
        """Walk back from ``name`` to its source (input or neuron): (source, [intermediate nodes])."""
        chain = []
        while not (is_neuron(name) or name == inputs[0]):
            if len(incoming[name]) != 1:
                raise ValueError(f"NIR import: node {name} has {len(incoming[name])} inputs; only neuron nodes may "
                                 "sum several paths.")
            chain.append(name)
            name = incoming[name][0]
        return name, chain[::-1]

    # Layer order: depth-first from the input along edges; an edge back into the current path is a
    # feedback path (read at t − 1), so the reverse post-order ranks every neuron after its sources.
    order, state = [], {}

    def visit(name):
        state[name] = "open"
        for nxt in outgoing[name]:
            if nxt not in state:
                visit(nxt)
        state[name] = "done"
        order.append(name)

    visit(inputs[0])
    neurons_in_order = [n for n in reversed(order) if is_neuron(n)]
    unreached = [n for n in graph.nodes if is_neuron(n) and n not in state]
    if unreached:
        raise ValueError(f"NIR import: neurons {unreached} are not reachable from the input.")
    layer_of = {name: index for index, name in enumerate(neurons_in_order, start=1)}
    layer_of[inputs[0]] = 0
    input_shape = _hwc(graph.nodes[inputs[0]].input_type["input"])
    shapes = {inputs[0]: input_shape}
    layers, layer_params = [], []
    # Every layer's shape first (a feedback path needs its source's shape before that layer is built).
    for name in neurons_in_order:
        shapes[name] = _hwc(graph.nodes[name].input_type["input"])
    for name in neurons_in_order:
        neuron, gain = _neuron_from_node(nir, graph.nodes[name], name, dt, discretisation)
        paths, path_params = [], []
        for source_node in incoming[name]:
            source, chain_names = chain_to(source_node)
            chain, chain_params, out = _import_chain(nir, chain_names, graph, shapes[source])
            if gain != 1.0:
                chain, chain_params = chain + [ops.Scale(gain)], chain_params + [{}]
            if out != shapes[name]:
                raise ValueError(f"NIR import: the path from {source} into {name} gives shape {out}, the layer has "
                                 f"{shapes[name]}.")
            paths.append(network_lib.Path(layer_of[source], tuple(chain)))
            path_params.append(chain_params)
        forward = sorted(range(len(paths)), key=lambda i: paths[i].source >= layer_of[name])  # forward paths first
        layers.append(network_lib.SpikingLayer(tuple(paths[i] for i in forward), neuron))
        layer_params.append([path_params[i] for i in forward])
    source, chain_names = chain_to(incoming[outputs[0]][0]) if len(incoming[outputs[0]]) == 1 else (None, None)
    if source != neurons_in_order[-1]:
        raise ValueError("NIR import: the Output must be read from the last spiking layer through one chain.")
    readout, readout_params, _ = _import_chain(nir, chain_names, graph, shapes[source])
    net = network_lib.Network(input_shape, tuple(layers), tuple(readout))
    return net, {"layers": layer_params, "readout": readout_params}


def write(path: str, graph) -> None:
    """``nir.write``: the graph as an HDF5 file."""
    _nir().write(path, graph)


def read(path: str):
    """``nir.read``: a NIR graph from a file."""
    return _nir().read(path)
