"""Independent reference computations used by the identity tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import safjax
from safjax import losses
from safjax import network as network_lib
from safjax import neurons as neurons_lib
from safjax import simulate
from safjax.methods import ottt, saf


def max_abs_difference(tree_a, tree_b) -> float:
    diffs = jax.tree_util.tree_map(lambda a, b: jnp.max(jnp.abs(a - b)), tree_a, tree_b)
    return float(max(jax.tree_util.tree_leaves(diffs), default=0.0))


def max_abs(tree) -> float:
    return float(max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(tree)))


def saf_forward(net, params, inputs):
    """SAF forward: outputs [T, B, C] and spikes recovered as â[t] − λ â[t−1] per layer."""
    leak = saf.validate(net, "test")

    def body(state, x_t):
        new_state, (output, _, _) = saf.saf_step(net, leak, params, state, x_t)
        spikes = tuple(a - leak * b for a, b in zip(new_state.traces[1:], state.traces[1:]))
        return new_state, (output, spikes)

    state = saf.init_state(net, inputs.shape[1], inputs.dtype)
    _, (outputs, spikes) = jax.lax.scan(body, state, inputs)
    return outputs, spikes


def ottt_forward(net, params, inputs, labels):
    """OTTT forward outputs [T, B, C] (the value path of the two-evaluation trick)."""
    step_loss = ottt.make_step_loss(net, safjax.TrainConfig(), inputs.shape[0])

    def body(state, x_t):
        _, (state, output, _) = step_loss(params, state, x_t, labels)
        return state, output

    _, outputs = jax.lax.scan(body, ottt.init_state(net, inputs.shape[1], inputs.dtype), inputs)
    return outputs


def reference_ottt_step_gradients(net, params, inputs, labels, mse_weight):
    """OTTT by its definition (docs/methods.md §3): δ^l[t] = ∂L[t]/∂u^l[t] by BPTT with u[t−1],
    s[t−1] detached (found as the gradient of an additive probe on u), then ∇W = δ·âᵀ — the VJP of
    the operator evaluated on the traces, bias weighted by c_t. One explicit loop over t."""
    leak = network_lib.uniform_leak(net, "reference")
    num_steps, batch = inputs.shape[0], inputs.shape[1]
    state = simulate.init_network_state(net, batch, inputs.dtype)
    shapes = (net.input_shape,) + net.layer_shapes
    traces = [jnp.zeros((batch,) + s, inputs.dtype) for s in shapes]
    c = 0.0
    per_step = []

    @jax.jit
    def deltas_at(state, x_t):
        def loss_of_probes(probes):
            layer_probes, output_probe = probes
            spikes, new_state = [x_t], []
            for index, (layer, layer_params) in enumerate(zip(net.layers, params["layers"]), 1):
                signal_of = lambda src, index=index: spikes[src] if src < index else state[src - 1].s
                current = network_lib.layer_current(layer, layer_params, signal_of, 1.0)
                layer_state, s = neurons_lib.lif_step(
                    layer.neuron, jax.lax.stop_gradient(state[index - 1]), current + layer_probes[index - 1]
                )
                new_state.append(layer_state)
                spikes.append(s)
            output = network_lib.readout(net, params, spikes[-1], 1.0) + output_probe
            loss = losses.ce_mse_loss(output, labels, mse_weight) / num_steps
            return loss, (tuple(new_state), tuple(spikes))

        probes = (
            tuple(jnp.zeros((batch,) + s, inputs.dtype) for s in net.layer_shapes),
            jnp.zeros((batch, net.num_classes), inputs.dtype),
        )
        return jax.grad(loss_of_probes, has_aux=True)(probes)

    for t in range(num_steps):
        c = leak * c + 1.0
        (layer_deltas, output_delta), (new_state, spikes) = deltas_at(state, inputs[t])
        new_traces = [leak * a + s for a, s in zip(traces, spikes)]
        grads = {"layers": [], "readout": None}
        for index, (layer, layer_params) in enumerate(zip(net.layers, params["layers"]), 1):
            trace_of = lambda src, index=index: new_traces[src] if src < index else traces[src]
            _, vjp = jax.vjp(lambda p: network_lib.layer_current(layer, p, trace_of, c), layer_params)
            grads["layers"].append(vjp(layer_deltas[index - 1])[0])
        _, vjp = jax.vjp(
            lambda p: network_lib.readout(net, {"readout": p}, new_traces[-1], c), params["readout"]
        )
        grads["readout"] = vjp(output_delta)[0]
        per_step.append(grads)
        state, traces = new_state, new_traces
    return jax.tree_util.tree_map(lambda *g: jnp.stack(g), *per_step)


def assert_layers_fire(spikes, low=0.02, high=0.98):
    """Guard against vacuous identities: every layer must fire, but not saturate."""
    for index, s in enumerate(spikes, 1):
        rate = float(np.mean(np.asarray(s)))
        assert low < rate < high, f"layer {index} fires at rate {rate:.3f}; the test data is degenerate"
