"""Plain-numpy (float64) references written from the equations of docs/methods.md §1, §4, §6.

Nothing here calls safjax's network, method, neuron or operator code: the topology of each
`reference_nets` architecture is written out below by hand, and the only thing read from the
library is the params pytree's dense ``kernel`` / ``bias`` arrays.

    u^l[t] = λ (u^l[t−1] − V_th s^l[t−1]) + I^l[t],   s^l[t] = H(u^l[t] − V_th),  H(0) = 1
    I^l[t] = Σ_paths W (scale · s^k[·]) + b,           s^k[t] for k < l,  s^k[t−1] for k ≥ l
    o[t]   = W_o s^N[t] + b_o
"""

from __future__ import annotations

import numpy as np

# (source, fixed input scale) of every path of every spiking layer, in the order of
# `reference_nets.build` — written out by hand, not read from the Network object.
TOPOLOGY = {
    "mlp": [[(0, 1.0)], [(1, 1.0)]],
    "feedback": [[(0, 1.0), (3, 1.0)], [(1, 1.0)], [(2, 1.0)]],
    "skip": [[(0, 1.0)], [(1, 1.0)], [(2, 1.0), (1, 1.0), (0, 0.5)]],
}


def _dense(op_params_list):
    """The (kernel, bias) of the one dense operator in a path's parameter list, as float64."""
    dense = [p for p in op_params_list if "kernel" in p]
    assert len(dense) == 1, "reference supports one dense operator per path"
    return np.asarray(dense[0]["kernel"], np.float64), np.asarray(dense[0]["bias"], np.float64)


def numpy_layers(params, topology):
    """[[(source, scale, W, b) per path] per layer], readout (W_o, b_o) — numpy float64."""
    layers = []
    for layer_topology, layer_params in zip(topology, params["layers"], strict=True):
        paths = []
        for (source, scale), path_params in zip(layer_topology, layer_params, strict=True):
            w, b = _dense(path_params)
            paths.append((source, scale, w, b))
        layers.append(paths)
    return layers, _dense(params["readout"])


def lif_forward(layers, readout, inputs, leak, threshold):
    """The soft-reset LIF network, one explicit loop over t and over layers.

    inputs: [T, B, F]. Returns a dict with
      u, s:    per layer [T, B, n] membrane after the update and spikes
      o:       [T, B, C] readout o[t]
      traces:  (â^0[T], â^1[T], ..., â^N[T]), â[t] = λ â[t−1] + s[t]
      prev:    the same at T − 1
      c:       c_T = Σ_{k<T} λ^k
    """
    inputs = np.asarray(inputs, np.float64)
    num_steps, batch = inputs.shape[:2]
    w_o, b_o = readout
    sizes = [paths[0][2].shape[1] for paths in layers]
    u = [np.zeros((batch, n)) for n in sizes]
    s_prev = [None] + [np.zeros((batch, n)) for n in sizes]  # s^k[t−1]; index 0 unused
    traces = [np.zeros((batch, inputs.shape[2]))] + [np.zeros((batch, n)) for n in sizes]
    prev_traces = [a.copy() for a in traces]
    c = 0.0
    record_u = [[] for _ in layers]
    record_s = [[] for _ in layers]
    outputs = []
    for t in range(num_steps):
        s_now = [inputs[t]]  # s^k[t] for the layers computed so far
        for l, paths in enumerate(layers, start=1):
            current = np.zeros((batch, sizes[l - 1]))
            for source, scale, w, b in paths:
                signal = s_now[source] if source < l else s_prev[source]
                current = current + (scale * signal) @ w + b
            u[l - 1] = leak * (u[l - 1] - threshold * s_prev[l]) + current
            spikes = np.where(u[l - 1] - threshold >= 0.0, 1.0, 0.0)
            s_now.append(spikes)
            record_u[l - 1].append(u[l - 1].copy())
            record_s[l - 1].append(spikes)
        outputs.append(s_now[-1] @ w_o + b_o)
        prev_traces = [a.copy() for a in traces]
        traces = [leak * a + s for a, s in zip(traces, s_now)]
        c = leak * c + 1.0
        s_prev = [None] + s_now[1:]
    return {
        "u": [np.stack(r) for r in record_u],
        "s": [np.stack(r) for r in record_s],
        "o": np.stack(outputs),
        "traces": traces,
        "prev": prev_traces,
        "c": c,
    }


def ce_mse(logits, labels, gamma):
    """(1 − γ)·mean_b CE(o, y) + γ·mean_{b,c} (o − onehot(y))², and its gradient in o."""
    batch, classes = logits.shape
    onehot = np.eye(classes)[np.asarray(labels)]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    ce = -(onehot * log_softmax).sum(axis=1).mean()
    mse = ((logits - onehot) ** 2).mean()
    loss = (1.0 - gamma) * ce + gamma * mse
    grad = (1.0 - gamma) * (np.exp(log_softmax) - onehot) / batch
    grad = grad + gamma * 2.0 * (logits - onehot) / (batch * classes)
    return loss, grad


def spike_rep_reference(layers, readout, inputs, labels, leak, threshold, gamma):
    """SR by its formula (docs/methods.md §6) for a chain of dense layers (one path each, source l − 1).

    Rates a^l = â^l[T]/c_T measured by `lif_forward`; o = W_o a^N + b_o; backward by hand with
    ∂a^l/∂pre^l = (1/V_th)·1[0 < pre^l/V_th < 1] (0 on both edges), pre^l = W_l a^{l−1} + b_l
    at the measured a^{l−1}. Returns (loss, grads in the params pytree layout, details).
    """
    for l, paths in enumerate(layers, start=1):
        assert len(paths) == 1 and paths[0][0] == l - 1 and paths[0][1] == 1.0, "chain only"
    forward = lif_forward(layers, readout, inputs, leak, threshold)
    c = forward["c"]
    rates = [a / c for a in forward["traces"]]  # a^0 (input), a^1, ..., a^N
    pres, masks = [], []
    for l, paths in enumerate(layers, start=1):
        _, _, w, b = paths[0]
        pre = rates[l - 1] @ w + b
        x = pre / threshold
        pres.append(pre)
        masks.append(((x > 0.0) & (x < 1.0)).astype(np.float64))
    w_o, b_o = readout
    logits = rates[-1] @ w_o + b_o
    loss, g_out = ce_mse(logits, labels, gamma)
    grads_readout = {"kernel": rates[-1].T @ g_out, "bias": g_out.sum(axis=0)}
    delta = g_out @ w_o.T  # ∂loss/∂a^N
    grads_layers = [None] * len(layers)
    for l in range(len(layers), 0, -1):
        _, _, w, _ = layers[l - 1][0]
        g_pre = delta * masks[l - 1] / threshold
        grads_layers[l - 1] = [[{"kernel": rates[l - 1].T @ g_pre, "bias": g_pre.sum(axis=0)}]]
        delta = g_pre @ w.T
    grads = {"layers": grads_layers, "readout": [grads_readout]}
    details = {"logits": logits, "rates": rates, "pres": pres, "masks": masks, "forward": forward}
    return loss, grads, details
