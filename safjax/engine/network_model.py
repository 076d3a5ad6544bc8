"""`safjax.Network` as a step model (docs/methods.md §10.1): its layers' paths and readout,
evaluated with the engine's cells. Spiking layer l is cell l − 1; a path from source 0 reads the
input signal, from k < l cell k − 1's signal at t, from k ≥ l cell k − 1's signal at t − 1.
"""

from __future__ import annotations

from safjax import network as network_lib


class NetworkModel:
    """The step model of one `safjax.Network`."""

    scales_bias = True  # every operator takes the bias weight (safjax.ops)

    def __init__(self, net: network_lib.Network):
        self.net = net
        self.neurons = tuple(layer.neuron for layer in net.layers)
        self.cell_names = tuple(f"layer {index}" for index in range(1, net.num_layers + 1))
        self.cell_shapes = net.layer_shapes
        self.input_shape = net.input_shape
        self.num_classes = net.num_classes

    def apply(self, params, x_t, runtime):
        """One step: x_t [B, *input_shape] → o[t] [B, C] (see the module docstring)."""
        signals = [x_t]
        for index, (layer, layer_params) in enumerate(zip(self.net.layers, params["layers"]), start=1):

            def signal_of(source: int, index=index):
                return signals[source] if source < index else runtime.previous(source - 1)

            current = network_lib.layer_current(layer, layer_params, signal_of, runtime.bias_scale)
            signals.append(runtime.cell(index - 1, current))
        return network_lib.readout(self.net, params, signals[-1], runtime.bias_scale)

    def describe_cells(self, indices) -> str:
        return f"layers {[i + 1 for i in indices]}"

    def check_affine(self, method: str) -> None:
        network_lib.require_linear_operators(self.net, method)


def of(net: network_lib.Network) -> NetworkModel:
    """Not cached: equal networks may differ in what equality ignores (a dropout op's bound key)."""
    return NetworkModel(net)
