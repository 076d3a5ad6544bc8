"""VGG-11 written as a plain Flax model (`models.vgg11_sws_flax`) is the Sequential VGG-11
(`models.vgg11_sws`): same outputs and gradients on the same weights; and the benchmark
(`safjax.benchmark`, `experiments.benchmark`) measures a plain Flax model as it does a Network."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from safjax import benchmark, models, nn, simulate, train_config
from safjax.engine import flax_model
from safjax.methods import saf_e

SHAPE = (16, 16, 3)  # divisible by 8: VGG-11 pools three times
NUM_STEPS, BATCH = 3, 2


def weighted(module) -> list:
    """The synaptic operator modules in network order: 8 convs, then the dense readout."""
    if isinstance(module, nn.Sequential):
        return [m for m in module.modules if isinstance(m, nn.Operator) and m.op.synaptic]
    return [*module.convs, module.readout]


@pytest.mark.parametrize("settings", [{}, {"feedback": True}, {"dropout": 0.1}])
def test_one_seed_gives_both_vgg11s_the_same_weights(settings):
    seq = models.vgg11_sws(nnx.Rngs(0), width=0.125, **settings)
    flax = models.vgg11_sws_flax(nnx.Rngs(0), width=0.125, **settings)
    feedback = [op for path in seq.modules if isinstance(path, nn.Feedback) for op in path.operators if op.op.synaptic]
    pairs = list(zip(weighted(seq) + feedback, weighted(flax) + ([flax.feedback] if feedback else [])))
    assert len(pairs) == 9 + len(feedback)
    for index, (a, b) in enumerate(pairs):
        for name, value in a.params().items():
            np.testing.assert_array_equal(b.params()[name], value, err_msg=f"operator {index} {name}")


@pytest.fixture(scope="module")
def pair():
    """(Sequential, Flax model with the Sequential's weights copied in, inputs [T, B, 16, 16, 3])."""
    # V_th = 0.5: at the default 1 the deeper layers of this narrow net stay silent on random inputs
    seq = models.vgg11_sws(nnx.Rngs(0), threshold=0.5, input_shape=SHAPE, width=0.125)
    flax = models.vgg11_sws_flax(nnx.Rngs(1), threshold=0.5, input_shape=SHAPE, width=0.125)
    before = [op.params() for op in weighted(flax)]
    assert len(weighted(seq)) == len(weighted(flax)) == 9
    for source, target in zip(weighted(seq), weighted(flax)):
        target.load_params(source.params())
    changed = [not np.allclose(b["kernel"], op.params()["kernel"]) for b, op in zip(before, weighted(flax))]
    assert all(changed), "the copy must replace the Flax model's own (other-seed) weights"
    inputs = 3.0 * jax.random.uniform(jax.random.key(2), (NUM_STEPS, BATCH) + SHAPE, jnp.float32)
    return seq, flax, inputs


def test_flax_vgg11_outputs_equal_the_sequentials(pair):
    seq, flax, inputs = pair
    model = flax_model.FlaxModel(flax).with_input(SHAPE, jnp.float32)
    seq_out, seq_spikes = simulate.run(seq.network, seq.params(), inputs)
    flax_out, flax_spikes = simulate.run(model, nnx.state(flax, nnx.Param), inputs)
    assert flax_out.dtype == jnp.float32 and flax_out.shape == (NUM_STEPS, BATCH, 10)
    rates = [float(s.mean()) for s in seq_spikes]
    assert len(rates) == 8 and all(0.05 < r < 0.95 for r in rates), f"every layer must fire, rates {rates}"
    np.testing.assert_allclose(flax_out, seq_out, rtol=1e-5, atol=1e-5)
    for layer, (a, b) in enumerate(zip(seq_spikes, flax_spikes), start=1):
        assert float(jnp.mean(a != b)) < 1e-3, f"layer {layer}: spikes differ"


@pytest.mark.slow
def test_flax_vgg11_saf_e_gradients_equal_the_sequentials(pair):
    """Under SAF the Flax front-end feeds normalised signals, the Network scales its biases: same gradient."""
    seq, flax, inputs = pair
    model = flax_model.FlaxModel(flax).with_input(SHAPE, jnp.float32)
    labels = jnp.arange(BATCH) % 10
    config = train_config.TrainConfig()
    # per-step gradients [T, ...] of every parameter (SAF-E updates after every step)
    seq_grads = saf_e.step_gradients(seq.network, seq.params(), inputs, labels, config)
    flax_grads = nnx.to_pure_dict(saf_e.step_gradients(model, nnx.state(flax, nnx.Param), inputs, labels, config))
    ordered = [flax_grads["convs"][i] for i in range(8)] + [flax_grads["readout"]]
    seq_ordered = [seq_grads["layers"][i][0][-1] for i in range(8)] + [seq_grads["readout"][-1]]
    for index, (a, b) in enumerate(zip(seq_ordered, ordered)):
        for name in a:
            assert float(jnp.abs(a[name]).max()) > 0, f"operator {index} {name}: zero gradient"
            np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-6, err_msg=f"operator {index} {name}")


METHODS = ["saf_e", "ottt_o", "bptt", "saf_f"]


@pytest.fixture(scope="module")
def tiny_records():
    """The benchmark's records of both VGG-11s at width 0.0625, T = 2, batch 2."""
    out = {}
    for name in ("vgg11_sws", "vgg11_sws_flax"):
        net, params = benchmark.build(name, "cifar10", width=0.0625)
        out[name] = {r["method"]: r for r in benchmark.measure(METHODS, net, params, [2], 2, repeats=1,
                                                                log=lambda line: None, baseline="bptt")}
    return out


@pytest.mark.slow
def test_build_gives_a_flax_step_model(tiny_records):
    net, params = benchmark.build("vgg11_sws_flax", "cifar10", width=0.0625)
    assert isinstance(net, flax_model.FlaxModel)
    assert net.input_shape == (32, 32, 3) and net.num_classes == 10 and len(net.cell_shapes) == 8
    assert isinstance(params, nnx.State)


@pytest.mark.slow
def test_benchmark_measures_the_flax_vgg11_as_the_sequential(tiny_records):
    seq, flax = tiny_records["vgg11_sws"], tiny_records["vgg11_sws_flax"]
    for method in METHODS:
        s, f = seq[method], flax[method]
        assert f["temp_bytes"] > 0 and f["step_time_ms"] > 0
        # Deterministic counts of the traced programs: the same network, the same work.
        assert f["flops"] == s["flops"] and f["forward_flops"] == s["forward_flops"], method
        assert f["synaptic_ops_per_step"] == s["synaptic_ops_per_step"], method
    assert flax["saf_e"]["synaptic_ops_per_step"] == 1 and flax["ottt_o"]["synaptic_ops_per_step"] == 2
    assert "analytic_macs" in seq["bptt"] and "analytic_macs" not in flax["bptt"]
    assert flax["saf_e"]["temp_bytes_vs_bptt"] == flax["saf_e"]["temp_bytes"] / flax["bptt"]["temp_bytes"]


@pytest.mark.slow
def test_benchmark_cli_runs_the_flax_vgg11(tmp_path):
    output = tmp_path / "records.json"
    result = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", "--model=vgg11_sws_flax", "--dataset=cifar10",
         "--width=0.0625", "--time_steps=2", "--batch_size=2", "--repeats=1", "--methods=saf_e,bptt",
         f"--output={output}"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(output.read_text())
    assert data["model"] == "vgg11_sws_flax" and data["width"] == 0.0625
    assert [r["method"] for r in data["records"]] == ["saf_e", "bptt"]
    assert "no analytic cost model" in result.stdout


def test_benchmark_cli_refuses_a_bad_width():
    result = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", "--model=vgg11_sws_flax", "--width=0"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == "error: --width must be a channel multiplier > 0, got 0.0."
