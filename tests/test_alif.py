"""The adaptive LIF neuron (docs/methods.md §1.6): its forward against an independent recursion,
β = 0 is LIF, adaptation lowers the rate, its surrogate gradients (through b, and none through the
previous state when detached), training by BPTT / TBPTT, refusal by SAF / OTTT / SR, the CLI."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import safjax
from safjax import neurons, nn

import background
from budget import first_fast


def _reference(currents, leak, threshold, rho, beta, reset):
    """§1.6 written out in numpy: currents [T, n] → (u, s, b), each [T, n]."""
    u = np.zeros(currents.shape[1])
    s = np.zeros_like(u)
    b = np.zeros_like(u)
    us, ss, bs = [], [], []
    for current in currents:
        b = rho * b + (1 - rho) * s
        if reset == "soft":
            u = leak * (u - threshold * s) + current
        else:
            u = leak * u * (1 - s) + current
        s = (u >= threshold + beta * b).astype(float)
        us.append(u)
        ss.append(s)
        bs.append(b)
    return np.array(us), np.array(ss), np.array(bs)


def _run(config, currents):
    """alif_step over currents [T, n] → (u, s, b), each [T, n]."""
    state = config.init_state(currents.shape[1:], jnp.float64)
    us, ss, bs = [], [], []
    for current in currents:
        state, s = neurons.alif_step(config, state, jnp.asarray(current))
        np.testing.assert_array_equal(s, state.s)
        us.append(state.v)
        ss.append(s)
        bs.append(state.b)
    return np.array(us), np.array(ss), np.array(bs)


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("leak,threshold,rho,beta", [(0.5, 1.0, 0.9, 1.8), (0.9, 0.7, 0.6, 0.5), (1.0, 1.0, 0.0, 1.0)])
def test_alif_step_follows_the_recursion(reset, leak, threshold, rho, beta):
    currents = np.random.default_rng(0).uniform(0.0, 2.0, size=(12, 16))
    got = _run(neurons.alif(leak, threshold, rho, beta, reset), currents)
    want = _reference(currents, leak, threshold, rho, beta, reset)
    np.testing.assert_array_equal(got[1], want[1])  # spikes exact
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[2], want[2], rtol=0, atol=1e-12)
    assert 0.05 < want[1].mean() < 0.95  # the test exercised spikes ...
    assert np.any(want[1] != _reference(currents, leak, threshold, rho, 0.0, reset)[1])  # ... and adaptation


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_zero_adaptation_strength_is_lif(reset):
    currents = jnp.asarray(np.random.default_rng(1).uniform(0.0, 2.0, size=(12, 16)))
    _, alif_spikes, _ = _run(neurons.alif(0.7, 0.9, 0.8, 0.0, reset), currents)
    lif, state, lif_spikes = neurons.lif(0.7, 0.9, reset), neurons.init_lif_state((16,), jnp.float64), []
    for current in currents:
        state, s = lif.step(state, current)
        lif_spikes.append(s)
    np.testing.assert_array_equal(alif_spikes, np.array(lif_spikes))


def test_adaptation_lowers_the_rate_under_a_constant_current():
    currents = np.full((20, 1), 1.2)
    _, alif_spikes, adaptation = _run(neurons.alif(), currents)
    _, lif_spikes, _ = _run(neurons.alif(adaptation_strength=0.0), currents)
    assert lif_spikes.sum() == 20  # 1.2 ≥ V_th every step: LIF fires at every step
    assert 0 < alif_spikes.sum() < lif_spikes.sum()
    assert np.all((0 <= adaptation) & (adaptation <= 1))


def test_protocol_description_and_registry():
    config = neurons.make("alif", 0.9, 0.8)
    assert config == neurons.alif(0.9, 0.8) and isinstance(config, neurons.NeuronModel)
    assert config.capabilities == frozenset()
    assert config.describe() == "ALIF(ρ=0.9, β=1.8)"
    assert neurons.alif(reset="hard").describe() == "ALIF(ρ=0.9, β=1.8, reset='hard')"
    state = config.init_state((2, 3), jnp.float32)
    assert state._fields == ("v", "s", "b")
    state, s = config.step(state, jnp.full((2, 3), 2.0, jnp.float32))
    assert all(x.shape == (2, 3) and x.dtype == jnp.float32 for x in (*state, s))


@pytest.mark.parametrize("kwargs,match", [
    ({"leak": 0.0}, r"`leak` must lie in \(0, 1\]"),
    ({"threshold": -1.0}, "`threshold` must be a finite number > 0"),
    ({"adaptation": 1.0}, r"`adaptation` \(ρ\) must lie in \[0, 1\)"),
    ({"adaptation_strength": -0.1}, r"`adaptation_strength` \(β\) must be a finite number ≥ 0"),
    ({"reset": "zero"}, "`reset` must be one of"),
    ({"surrogate": "sigmoid"}, "`surrogate` must be a safjax.surrogates.Surrogate"),
])
def test_bad_settings_raise_one_clear_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as error:
        neurons.alif(**kwargs)
    assert "\n" not in str(error.value)


def _one_step_gradients(config, stop_state_gradient):
    """Gradients of s[t] (the surrogate) w.r.t. the previous state and the current, at one neuron."""
    state = neurons.ALIFState(jnp.array(0.6), jnp.array(1.0), jnp.array(0.3))

    def spike(v, s, b, current):
        return config.step(neurons.ALIFState(v, s, b), current, stop_state_gradient)[1]

    return jax.grad(spike, argnums=(0, 1, 2, 3))(*state, jnp.array(1.5))


def test_one_step_gradient_through_membrane_and_adaptation():
    """∂s/∂u = h(z), ∂s/∂b = −β·h(z) at z = u − A; through the step to u[t−1], s[t−1], b[t−1]."""
    config = neurons.alif(0.5, 1.0, 0.9, 1.8)
    b = 0.9 * 0.3 + 0.1 * 1.0
    u = 0.5 * (0.6 - 1.0) + 1.5
    h = config.surrogate.derivative(jnp.array(u - (1.0 + 1.8 * b)))
    d_u, d_s, d_b, d_current = _one_step_gradients(config, stop_state_gradient=False)
    np.testing.assert_allclose(d_u, 0.5 * h, rtol=1e-12)
    np.testing.assert_allclose(d_s, h * (-0.5 * 1.0 - 1.8 * 0.1), rtol=1e-12)
    np.testing.assert_allclose(d_b, -1.8 * 0.9 * h, rtol=1e-12)
    np.testing.assert_allclose(d_current, h, rtol=1e-12)
    assert h > 0.01


def test_stop_state_gradient_detaches_u_s_and_b():
    d_u, d_s, d_b, d_current = _one_step_gradients(neurons.alif(), stop_state_gradient=True)
    assert d_u == 0 and d_s == 0 and d_b == 0
    assert d_current == _one_step_gradients(neurons.alif(), stop_state_gradient=False)[3] != 0


@pytest.mark.parametrize("beta", [0.0, 1.8])
def test_bptt_gradient_reaches_earlier_spikes_through_b(beta):
    """d s[2] / d I[1] = h(z₂)·(λ·(1 − V_th·h(z₁)) − β·(1 − ρ)·h(z₁)): the membrane path and, for
    β > 0, the adaptation path I[1] → s[1] → b[2] → A[2] → s[2]."""
    config = neurons.alif(0.5, 1.0, 0.9, beta)

    def second_spike(first_current):
        state = config.init_state((), jnp.float64)
        state, _ = config.step(state, first_current)
        return config.step(state, jnp.array(1.4))[1]

    i1 = jnp.array(1.1)
    z1 = i1 - 1.0
    b2 = 0.1 * 1.0  # s[1] = 1
    z2 = 0.5 * (i1 - 1.0) + 1.4 - (1.0 + beta * b2)
    h1, h2 = config.surrogate.derivative(z1), config.surrogate.derivative(z2)
    want = h2 * (0.5 * (1.0 - h1) - beta * 0.1 * h1)
    np.testing.assert_allclose(jax.grad(second_spike)(i1), want, rtol=1e-12)


def _alif_model():
    rngs = nnx.Rngs(0)
    return nn.Sequential(nn.Dense(6, 8, rngs=rngs), nn.Neuron(neurons.alif()), nn.Dense(8, 3, rngs=rngs),
                         input_shape=(6,))


def _batch():
    inputs = jax.random.uniform(jax.random.PRNGKey(1), (4, 5, 6), minval=0.0, maxval=3.0)  # [T, B, 6]
    return inputs, jnp.array([0, 1, 2, 0, 1])


@pytest.mark.parametrize("method", first_fast([
    pytest.param("bptt", id="bptt"), pytest.param(safjax.methods.get_method("tbptt", truncation=2), id="tbptt"),
    pytest.param("sltt", id="sltt"), pytest.param(safjax.methods.get_method("sltt_k", backprop_steps=2), id="sltt_k")]))
def test_alif_network_trains_with_bptt_tbptt_and_sltt(method):
    model = _alif_model()
    params, optimizer = model.params(), optax.sgd(0.5)
    step = safjax.make_train_step(method, model.network, optimizer)
    new_params, _, metrics = step(params, optimizer.init(params), *_batch(), jax.random.key(0))
    assert np.isfinite(metrics.loss) and 0 < float(metrics.firing_rates[0]) < 1
    hidden, new_hidden = params["layers"][0][0][0]["kernel"], new_params["layers"][0][0][0]["kernel"]
    assert not np.allclose(hidden, new_hidden)  # the gradient reached the input weights through ALIF


@pytest.mark.parametrize("method", ["saf_e", "saf_f", "ottt_a", "ottt_o", "spike_rep"])
def test_fixed_threshold_methods_refuse_alif_in_one_line(method):
    model = _alif_model()
    with pytest.raises(ValueError, match=rf"^{method} needs .* layers \[1\] use ALIF\(ρ=0.9, β=1.8\)") as error:
        safjax.make_train_step(method, model.network, optax.sgd(0.1))
    assert "\n" not in str(error.value)


def _train_args(tmp_path, *flags):
    return ["-m", "experiments.train", "--neuron=alif", "--epochs=1", "--num_devices=1", f"--workdir={tmp_path}",
            *flags]


def _train(tmp_path, *flags):
    return subprocess.run([sys.executable, *_train_args(tmp_path, *flags)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def alif_bptt_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("alif_bptt")
    run = background.Run(_train_args(workdir, "--method=bptt"))
    yield run, workdir
    run.stop()


@pytest.fixture(scope="module", autouse=True)
def _start_the_binary_first(request):
    """The binary's run (~6 s of start-up and compilation on one core) goes on while this
    module's in-process tests run (see background.py)."""
    if background.selected(request, "test_train_binary_trains_alif_with_bptt"):
        request.getfixturevalue("alif_bptt_run")


@pytest.mark.slow
def test_train_binary_trains_alif_with_bptt(alif_bptt_run):
    run, workdir = alif_bptt_run
    result = run.result(timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (workdir / "results.json").exists()


# Slow: a second subprocess of the binary. The refusal itself is tested in-process above
# (test_fixed_threshold_methods_refuse_alif_in_one_line), the binary's turning a ValueError into
# one `error:` line by test_train.test_bad_flags_exit_nonzero_with_one_clear_line and
# test_user_faults, and --neuron=alif reaching the trainer by the run above.
@pytest.mark.slow
def test_train_binary_refuses_alif_under_saf_e(tmp_path):
    run = _train(tmp_path, "--method=saf_e")
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "saf_e needs" in errors[0] and "ALIF(ρ=0.9, β=1.8)" in errors[0]
