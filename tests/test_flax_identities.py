"""The identities of docs/methods.md §5 on models written in plain Flax NNX, in float64.

Three user models — an MLP, a conv net with average pooling and a residual sum, and a net with a
feedback path from its last cell at t − 1 into its first — are trained through the engine
(`safjax.engine.flax_model`), and every method's result is checked to ≤ 1e-10 against:

- a reference written here from the equations of docs/methods.md (§1 LIF, §2 BPTT, §3 OTTT, §6 SR,
  §9 SLTT): its own Heaviside with the sigmoid surrogate (α = 4), its own LIF loop, its own
  dense / conv / average-pool / mean readout written with jax.numpy and lax from the kernels and
  biases of the model's params. Nothing in the references calls safjax (no simulate, method,
  engine, nn, neuron, surrogate, loss or operator code), so they are independent of what they check;
- for the MLP and the feedback net, the same network written as a `safjax.nn.Sequential` with the
  same weights (the user-model path equals the Sequential path, every method).

Checked: SAF's and the simulator's spikes are the LIF spikes (every cell fires at a rate in
(2 %, 98 %), so nothing is vacuous); per-step ∇SAF-E = OTTT's per-step gradient = engine OTTT_O's;
Σ_t ∇SAF-E = OTTT_A's; ∇SAF-F = ∇SR = engine spike_rep's; SLTT = BPTT with the temporal paths
detached (and ≠ full BPTT); BPTT and TBPTT with K = T = the reference BPTT.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import safjax
from safjax import nn, simulate
from safjax.engine import flax_model
from safjax.methods import bptt, online, ottt, ottt_o, saf, saf_e, saf_f, sltt, spike_rep
from budget import first_fast

F64 = jnp.float64
LEAK, THRESHOLD = 0.8, 0.7  # V_th ≠ 1 separates SR's 1/V_th convention from the paper's (§4.4)
MSE_WEIGHT = 0.05  # γ of TrainConfig's default loss (§1.4)
ALPHA = 4.0  # the sigmoid surrogate's sharpness, LIF's default (§1.3)
NUM_STEPS, BATCH = 5, 4
TOL = 1e-10
sg = jax.lax.stop_gradient


# The three user models, plain Flax layers and safjax.nn cells.

class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(6, 12, param_dtype=F64, rngs=rngs)
        self.lif1 = nn.LIF(LEAK, THRESHOLD)
        self.fc2 = nnx.Linear(12, 8, param_dtype=F64, rngs=rngs)
        self.lif2 = nn.LIF(LEAK, THRESHOLD)
        self.out = nnx.Linear(8, 3, param_dtype=F64, rngs=rngs)

    def __call__(self, x):
        return self.out(self.lif2(self.fc2(self.lif1(self.fc1(x)))))


class ConvNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(2, 4, (3, 3), param_dtype=F64, rngs=rngs)
        self.lif1 = nn.LIF(LEAK, THRESHOLD)
        self.conv2 = nnx.Conv(4, 5, (3, 3), param_dtype=F64, rngs=rngs)
        self.lif2 = nn.LIF(LEAK, THRESHOLD)
        self.conv3 = nnx.Conv(5, 4, (3, 3), param_dtype=F64, rngs=rngs)
        self.lif3 = nn.LIF(LEAK, THRESHOLD)
        self.out = nnx.Linear(4, 3, param_dtype=F64, rngs=rngs)

    def __call__(self, x):  # x [B, 8, 8, 2]
        pooled = nnx.avg_pool(self.lif1(self.conv1(x)), (2, 2), strides=(2, 2))  # [B, 4, 4, 4]
        s2 = self.lif2(self.conv2(pooled))
        s3 = self.lif3(self.conv3(s2) + pooled)  # residual block
        return self.out(s3.mean(axis=(1, 2)))


class FeedbackNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(6, 10, param_dtype=F64, rngs=rngs)
        self.fb = nnx.Linear(8, 10, param_dtype=F64, rngs=rngs)
        self.lif1 = nn.LIF(LEAK, THRESHOLD)
        self.fc2 = nnx.Linear(10, 9, param_dtype=F64, rngs=rngs)
        self.lif2 = nn.LIF(LEAK, THRESHOLD)
        self.fc3 = nnx.Linear(9, 8, param_dtype=F64, rngs=rngs)
        self.lif3 = nn.LIF(LEAK, THRESHOLD, shape=(8,))
        self.out = nnx.Linear(8, 3, param_dtype=F64, rngs=rngs)

    def __call__(self, x):
        s1 = self.lif1(self.fc1(x) + self.fb(self.lif3.previous()))
        return self.out(self.lif3(self.fc3(self.lif2(self.fc2(s1)))))


# The same models by hand: `currents(w, x, fire, previous, bias_scale)` runs one step, with
# fire(i, I) → the signal cell i passes on, previous(i) → cell i's signal at t − 1 and every bias
# multiplied by bias_scale; w is the params' pure dict.

def _dense(p, x, bias_scale):
    return x @ p["kernel"] + bias_scale * p["bias"]


def _conv(p, x, bias_scale):  # 3×3, stride 1, SAME, NHWC / HWIO
    y = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
    return y + bias_scale * p["bias"]


def _pool2(x):  # 2×2 average, stride 2
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def mlp_currents(w, x, fire, previous, bias_scale):
    del previous
    s1 = fire(0, _dense(w["fc1"], x, bias_scale))
    s2 = fire(1, _dense(w["fc2"], s1, bias_scale))
    return _dense(w["out"], s2, bias_scale)


def conv_currents(w, x, fire, previous, bias_scale):
    del previous
    pooled = _pool2(fire(0, _conv(w["conv1"], x, bias_scale)))
    s2 = fire(1, _conv(w["conv2"], pooled, bias_scale))
    s3 = fire(2, _conv(w["conv3"], s2, bias_scale) + pooled)
    return _dense(w["out"], s3.mean(axis=(1, 2)), bias_scale)


def feedback_currents(w, x, fire, previous, bias_scale):
    s1 = fire(0, _dense(w["fc1"], x, bias_scale) + _dense(w["fb"], previous(2), bias_scale))
    s2 = fire(1, _dense(w["fc2"], s1, bias_scale))
    s3 = fire(2, _dense(w["fc3"], s2, bias_scale))
    return _dense(w["out"], s3, bias_scale)


class Spec(NamedTuple):
    module_type: type
    currents: Callable
    input_shape: tuple
    cell_shapes: tuple  # written out by hand, not read from the engine
    input_scale: float


SPECS = {
    "mlp": Spec(MLP, mlp_currents, (6,), ((12,), (8,)), 1.5),
    "conv": Spec(ConvNet, conv_currents, (8, 8, 2), ((8, 8, 4), (4, 4, 5), (4, 4, 4)), 1.5),
    "feedback": Spec(FeedbackNet, feedback_currents, (6,), ((10,), (9,), (8,)), 1.5),
}


# The reference neuron (§1.2, §1.3) and loss (§1.4).

@jax.custom_jvp
def heaviside(z):
    """H(z) = 1[z ≥ 0], derivative α σ(αz)(1 − σ(αz))."""
    return jnp.where(z >= 0.0, 1.0, 0.0).astype(z.dtype)


@heaviside.defjvp
def _heaviside_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    sigma = 1.0 / (1.0 + jnp.exp(-ALPHA * z))
    return heaviside(z), ALPHA * sigma * (1.0 - sigma) * dz


def lif(u_prev, s_prev, current):
    """u[t] = λ(u[t−1] − V_th s[t−1]) + I[t], s[t] = H(u[t] − V_th) → (u[t], s[t])."""
    u = LEAK * (u_prev - THRESHOLD * s_prev) + current
    return u, heaviside(u - THRESHOLD)


def ce_mse(logits, labels):
    """(1 − γ)·mean_b CE + γ·mean_{b,c} (o − onehot)²."""
    onehot = jnp.eye(logits.shape[-1], dtype=logits.dtype)[labels]
    log_p = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
    ce = -(onehot * log_p).sum(-1).mean()
    return (1.0 - MSE_WEIGHT) * ce + MSE_WEIGHT * ((logits - onehot) ** 2).mean()


# The reference cells of one step: each a fire / previous pair for `currents`.

class SpikingCells:
    """The LIF network (§1.2); ``detach`` stops u[t−1], the reset's s[t−1] and feedback reads (SLTT, §9)."""

    def __init__(self, u, s, detach=False):
        self.u, self.s, self.detach = u, s, detach
        self.new_u, self.new_s, self.currents = list(u), list(s), [None] * len(u)

    def fire(self, i, current):
        cut = sg if self.detach else (lambda v: v)
        self.currents[i] = current
        self.new_u[i], self.new_s[i] = lif(cut(self.u[i]), cut(self.s[i]), current)
        return self.new_s[i]

    def previous(self, i):
        return sg(self.s[i]) if self.detach else self.s[i]


class TraceCells:
    """OTTT's gradient pass (§3.2): I = I_trace + sg(I_spike − I_trace), the neuron state at t − 1
    detached, signal â[t] = λ â[t−1] + s[t]; a feedback read is â[t−1]."""

    def __init__(self, u, s, traces, value_currents):
        self.u, self.s, self.traces, self.value_currents = u, s, traces, value_currents
        self.new_u, self.new_s, self.new_traces = list(u), list(s), list(traces)

    def fire(self, i, current):
        dual = current + sg(self.value_currents[i] - current)
        self.new_u[i], self.new_s[i] = lif(sg(self.u[i]), sg(self.s[i]), dual)
        self.new_traces[i] = LEAK * sg(self.traces[i]) + self.new_s[i]
        return self.new_traces[i]

    def previous(self, i):
        return sg(self.traces[i])


class RateCells:
    """SR's rate map (§6) at the measured rates â[T]/c_T: value the measured rate, derivative
    1/V_th strictly inside 0 < I/V_th < 1 (0 on the edges); a feedback read is the constant â[T−1]/c_T."""

    def __init__(self, traces, prev_traces, c):
        self.traces, self.prev_traces, self.c = traces, prev_traces, c

    def fire(self, i, current):
        x = current / THRESHOLD
        inside = (x > 0.0) & (x < 1.0)
        return sg(self.traces[i] / self.c) + jnp.where(inside, x - sg(x), 0.0)

    def previous(self, i):
        return sg(self.prev_traces[i] / self.c)


def _initial_carry(spec, inputs):
    """(u, s, â per cell, â^0, c) at t = 0: all zero."""
    zeros = [jnp.zeros((inputs.shape[1],) + shape, F64) for shape in spec.cell_shapes]
    return zeros, zeros, zeros, jnp.zeros_like(inputs[0]), jnp.zeros((), F64)


def ref_forward(spec, w, inputs, detach=False):
    """The LIF network over T steps: o [T, B, C], s per cell [T, B, ...], â^0[T], â per cell at T
    and T − 1, c_T = Σ_{k<T} λ^k."""

    def step(carry, x_t):
        u, s, traces, input_trace, c = carry
        cells = SpikingCells(u, s, detach)
        output = spec.currents(w, x_t, cells.fire, cells.previous, 1.0)
        new_traces = [LEAK * a + s_i for a, s_i in zip(traces, cells.new_s)]
        carry = (cells.new_u, cells.new_s, new_traces, LEAK * input_trace + x_t, LEAK * c + 1.0)
        return carry, (output, cells.new_s, traces)

    (_, _, traces, input_trace, c), (outputs, spikes, earlier) = jax.lax.scan(
        step, _initial_carry(spec, inputs), inputs)
    return dict(outputs=outputs, spikes=spikes, input_trace=input_trace, traces=traces,
                prev_traces=[a[-1] for a in earlier], c=c)


def ref_bptt_loss(spec, w, inputs, labels, detach=False):
    """Σ_t L[t], L[t] = ℓ(o[t], y)/T (§2); ``detach``: SLTT's loss (§9)."""
    outputs = ref_forward(spec, w, inputs, detach)["outputs"]
    return jax.vmap(ce_mse, in_axes=(0, None))(outputs, labels).sum() / inputs.shape[0]


def ref_ottt_step_grads(spec, w, inputs, labels):
    """∇L[t] of OTTT (§3) for every t, stacked on a leading [T] axis: value from spikes (bias × 1),
    gradient from traces (bias × c_t), neuron state detached."""
    num_steps = inputs.shape[0]

    def step(carry, x_t):
        u, s, traces, input_trace, c = carry
        input_trace, c = LEAK * input_trace + x_t, LEAK * c + 1.0

        def step_loss(w):
            value = SpikingCells(u, s)
            o_value = spec.currents(sg(w), x_t, value.fire, value.previous, 1.0)
            trace = TraceCells(u, s, traces, value.currents)
            o_trace = spec.currents(w, input_trace, trace.fire, trace.previous, c)
            output = o_trace + sg(o_value - o_trace)
            return ce_mse(output, labels) / num_steps, (trace.new_u, trace.new_s, trace.new_traces)

        grads, (u, s, traces) = jax.grad(step_loss, has_aux=True)(w)
        return (u, s, traces, input_trace, c), grads

    return jax.lax.scan(step, _initial_carry(spec, inputs), inputs)[1]


def ref_sr_grads(spec, w, inputs, labels):
    """∇ of SR's one loss ℓ(W_o a^N + b_o, y) through the rate map at the measured rates (§6)."""
    run = ref_forward(spec, sg(w), inputs)

    def loss(w):
        cells = RateCells(run["traces"], run["prev_traces"], run["c"])
        logits = spec.currents(w, run["input_trace"] / run["c"], cells.fire, cells.previous, 1.0)
        return ce_mse(logits, labels)

    return jax.grad(loss)(w)


@functools.partial(jax.jit, static_argnums=0)
def references(name, w, inputs, labels):
    """Every reference result of model ``name`` at the params' pure dict ``w``, in one program."""
    spec = SPECS[name]
    forward = ref_forward(spec, w, inputs)
    return dict(
        outputs=forward["outputs"], spikes=forward["spikes"],
        bptt=jax.grad(lambda w: ref_bptt_loss(spec, w, inputs, labels))(w),
        sltt=jax.grad(lambda w: ref_bptt_loss(spec, w, inputs, labels, detach=True))(w),
        ottt_steps=ref_ottt_step_grads(spec, w, inputs, labels),
        sr=ref_sr_grads(spec, w, inputs, labels),
    )


# The engine on the Flax model (and, below, on the same network written as a Sequential).

def method_results(model, params, inputs, labels, as_dict):
    """Every method's gradient on ``model`` (a step model or a Network) at ``params``, jit-traceable."""
    config = safjax.TrainConfig()
    grads = lambda method: as_dict(method.loss_and_grads(model, params, inputs, labels, config)[1])  # noqa: E731
    return dict(
        bptt=grads(bptt), sltt=grads(sltt), spike_rep=grads(spike_rep), saf_f=grads(saf_f),
        saf_e_steps=as_dict(saf_e.step_gradients(model, params, inputs, labels, config)),
        ottt_o_steps=as_dict(ottt_o.step_gradients(model, params, inputs, labels, config)),
        ottt_authors_steps=as_dict(AUTHORS_STEP_GRADIENTS(model, params, inputs, labels, config)),
    )


# OTTT's per-step gradients in its authors' convention (docs/methods.md §3.4): compared between the
# Flax model and the Sequential (test_flax_model_equals_sequential_every_method), it checks that the
# authors' δ for biases reaches the bias leaves of an nnx.State too (their paths end in ".value").
AUTHORS_STEP_GRADIENTS = online.make_step_gradients(ottt.step_loss_maker("authors"), ottt.init_state, "ottt_o")


def saf_run(model, params, inputs):
    """SAF's forward: o [T, B, C] and the spikes per cell it fires."""
    leak = saf.validate(model, "saf")
    step = lambda state, x_t: saf.saf_step(model, leak, params, state, x_t)  # noqa: E731
    _, (outputs, _, spikes) = jax.lax.scan(step, saf.init_state(model, inputs.shape[1], inputs.dtype), inputs)
    return outputs, spikes


@functools.partial(jax.jit, static_argnums=0)
def engine_results(model, params, inputs, labels):
    """The engine's spikes, outputs and every method's gradient on the Flax step model, in one program."""
    sim_outputs, sim_spikes = simulate.run(model, params, inputs)
    saf_outputs, saf_spikes = saf_run(model, params, inputs)
    results = method_results(model, params, inputs, labels, nnx.to_pure_dict)
    return dict(results, sim_outputs=sim_outputs, sim_spikes=sim_spikes, saf_outputs=saf_outputs,
                saf_spikes=saf_spikes)


def one_update(module, method, params, inputs, labels):
    """The gradient a method's one SGD(1) train step applies: params − params'."""
    step = safjax.make_train_step(method, module, optax.sgd(1.0))
    new_params, _, _ = step(params, optax.sgd(1.0).init(params), inputs, labels)
    return jax.tree_util.tree_map(lambda a, b: a - b, nnx.to_pure_dict(params), nnx.to_pure_dict(new_params))


def build(name):
    """The Flax model with non-zero biases, time-varying inputs [T, B, ...] and labels [B]."""
    spec = SPECS[name]
    module = spec.module_type(nnx.Rngs(0))
    layers = [node for _, node in nnx.iter_graph(module) if isinstance(node, (nnx.Linear, nnx.Conv))]
    for index, layer in enumerate(layers):
        shape = layer.bias.get_value().shape
        layer.bias.set_value(0.3 * jax.random.normal(jax.random.key(100 + index), shape, F64))
    inputs = spec.input_scale * jax.random.uniform(
        jax.random.key(7), (NUM_STEPS, BATCH) + spec.input_shape, F64)
    labels = jnp.array([0, 1, 2, 1])
    return module, inputs, labels


@functools.lru_cache(maxsize=None)
def results(name):
    """(reference results, engine results, module, inputs, labels) of one model, computed once (numpy)."""
    module, inputs, labels = build(name)
    params = nnx.state(module, nnx.Param)
    model = flax_model.FlaxModel(module).with_input(SPECS[name].input_shape, F64)
    ref = references(name, nnx.to_pure_dict(params), inputs, labels)
    eng = engine_results(model, params, inputs, labels)
    eng["tbptt"] = one_update(module, safjax.methods.get_method("tbptt", truncation=NUM_STEPS), params, inputs,
                              labels)
    eng["ottt_a"] = one_update(module, "ottt_a", params, inputs, labels)
    return jax.device_get(ref), jax.device_get(eng), module, inputs, labels


def assert_equal(actual, expected, what):
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected), what
    diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), actual, expected)
    worst = max(jax.tree_util.tree_leaves(diffs))
    assert worst <= TOL, f"{what}: max |difference| = {worst:.3e} (per leaf: {diffs})"


def assert_not_vacuous(tree, what, floor=1e-6):
    """Every parameter receives a gradient: an identity between zeros would prove nothing."""
    sizes = jax.tree_util.tree_map(lambda g: float(np.max(np.abs(g))), tree)
    assert min(jax.tree_util.tree_leaves(sizes)) > floor, f"{what} has an (almost) zero leaf: {sizes}"


MODELS = ("mlp", "conv", "feedback")


@pytest.mark.parametrize("name", first_fast(MODELS))
def test_spikes_saf_and_simulator_equal_reference_lif(name):
    ref, eng, *_ = results(name)
    for i, s in enumerate(ref["spikes"]):
        rate = float(np.mean(s))
        assert 0.02 < rate < 0.98, f"{name}: cell {i} fires at rate {rate:.3f}; the test data is degenerate"
        np.testing.assert_array_equal(np.asarray(eng["saf_spikes"][i]), np.asarray(s), err_msg=f"SAF cell {i}")
        np.testing.assert_array_equal(np.asarray(eng["sim_spikes"][i]), np.asarray(s), err_msg=f"sim cell {i}")
    assert_equal(eng["sim_outputs"], ref["outputs"], f"{name}: simulate outputs")
    assert_equal(eng["saf_outputs"], ref["outputs"], f"{name}: SAF outputs")


@pytest.mark.parametrize("name", first_fast(MODELS))
def test_per_step_saf_e_and_ottt_o_equal_reference_ottt(name):
    ref, eng, *_ = results(name)
    assert_not_vacuous(jax.tree_util.tree_map(lambda g: g[-1], ref["ottt_steps"]), f"{name}: OTTT ∇L[T]")
    assert_equal(eng["saf_e_steps"], ref["ottt_steps"], f"{name}: per-step ∇SAF-E vs reference OTTT")
    assert_equal(eng["ottt_o_steps"], ref["ottt_steps"], f"{name}: per-step ∇OTTT_O vs reference OTTT")


@pytest.mark.parametrize("name", first_fast(MODELS))
def test_summed_saf_e_equals_reference_ottt_a(name):
    ref, eng, *_ = results(name)
    ottt_a = jax.tree_util.tree_map(lambda g: g.sum(0), ref["ottt_steps"])
    assert_equal(jax.tree_util.tree_map(lambda g: g.sum(0), eng["saf_e_steps"]), ottt_a,
                 f"{name}: Σ_t ∇SAF-E vs reference OTTT_A")
    assert_equal(eng["ottt_a"], ottt_a, f"{name}: engine OTTT_A's update vs reference OTTT_A")


@pytest.mark.parametrize("name", first_fast(MODELS))
def test_saf_f_and_spike_rep_equal_reference_sr(name):
    ref, eng, *_ = results(name)
    assert_not_vacuous(ref["sr"], f"{name}: reference ∇SR")
    assert_equal(eng["saf_f"], ref["sr"], f"{name}: ∇SAF-F vs reference SR")
    assert_equal(eng["spike_rep"], ref["sr"], f"{name}: engine ∇SR vs reference SR")


@pytest.mark.parametrize("name", first_fast(MODELS))
def test_sltt_equals_detached_reference_bptt(name):
    ref, eng, *_ = results(name)
    assert_equal(eng["sltt"], ref["sltt"], f"{name}: SLTT vs reference BPTT with temporal paths detached")
    gap = max(jax.tree_util.tree_leaves(
        jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), ref["sltt"], ref["bptt"])))
    assert gap > 1e-3, f"{name}: SLTT and BPTT differ by only {gap:.2e}; the comparison is vacuous"


@pytest.mark.parametrize("name", first_fast(MODELS))
def test_bptt_and_tbptt_equal_reference_bptt(name):
    ref, eng, *_ = results(name)
    assert_not_vacuous(ref["bptt"], f"{name}: reference ∇BPTT")
    assert_equal(eng["bptt"], ref["bptt"], f"{name}: BPTT vs reference BPTT")
    assert_equal(eng["tbptt"], ref["bptt"], f"{name}: TBPTT (K = T) update vs reference BPTT")


# The user-model path equals the Sequential path on the same weights.

def sequential_network(name):
    """``name`` as a safjax.nn.Sequential, and maps between its params tree and the Flax pure dict."""
    rngs = nnx.Rngs(1)
    dense = lambda n_in, n_out: nn.Dense(n_in, n_out, rngs=rngs, dtype=F64)  # noqa: E731
    cell = lambda: nn.LIF(LEAK, THRESHOLD)  # noqa: E731
    if name == "mlp":
        model = nn.Sequential(dense(6, 12), cell(), dense(12, 8), cell(), dense(8, 3), input_shape=(6,))
        to_seq = lambda w: {"layers": [[[w["fc1"]]], [[w["fc2"]]]], "readout": [w["out"]]}  # noqa: E731
        to_flax = lambda g: {"fc1": g["layers"][0][0][0], "fc2": g["layers"][1][0][0],  # noqa: E731
                             "out": g["readout"][0]}
    else:
        model = nn.Sequential(nn.Feedback(-1, dense(8, 10)), dense(6, 10), cell(), dense(10, 9), cell(),
                              dense(9, 8), cell(), dense(8, 3), input_shape=(6,))
        to_seq = lambda w: {"layers": [[[w["fc1"]], [w["fb"]]], [[w["fc2"]]], [[w["fc3"]]]],  # noqa: E731
                            "readout": [w["out"]]}
        to_flax = lambda g: {"fc1": g["layers"][0][0][0], "fb": g["layers"][0][1][0],  # noqa: E731
                             "fc2": g["layers"][1][0][0], "fc3": g["layers"][2][0][0], "out": g["readout"][0]}
    return model.network, to_seq, to_flax


@pytest.mark.parametrize("name", first_fast(["mlp", "feedback"]))
def test_flax_model_equals_sequential_every_method(name):
    _, eng, module, inputs, labels = results(name)
    network, to_seq, to_flax = sequential_network(name)
    w = nnx.to_pure_dict(nnx.state(module, nnx.Param))
    seq = jax.device_get(jax.jit(lambda p: method_results(network, p, inputs, labels, to_flax))(to_seq(w)))
    for method, grads in seq.items():
        assert_not_vacuous(grads, f"{name}: Sequential {method}")
        assert_equal(eng[method], grads, f"{name}: Flax model vs Sequential, {method}")
