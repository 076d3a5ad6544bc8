"""Synaptic-operation counts and the energy estimate (safjax.energy), against expectations written
here in numpy: spikes × fan-out for dense layers, a brute-force receptive-field count for
convolutions, dense MACs × T for analog input, and the 45 nm energy arithmetic."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from safjax import energy, simulate
from safjax import network as network_lib
from safjax import ops
from safjax.experiment_config import ExperimentConfig
from safjax.network import Network, Path, SpikingLayer


def _init(net, seed=0):
    """Parameters in numpy (eager jax.random initialisers would compile a program per array):
    kernels N(0, 1/fan_in), biases 0, gains 1."""
    shapes = jax.eval_shape(lambda: network_lib.init_params(net, jax.random.key(0), jnp.float64))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0.0, 1.0 / np.sqrt(np.prod(leaf.shape[:-1])), leaf.shape)
        return np.ones(leaf.shape) if name == "gain" else np.zeros(leaf.shape)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _copy_spikes(params, layer: int, path: int = 0):
    """Give a bias-free Dense path the kernel 2·I: with V_th = 1 and λ = 0.5 (soft reset) a layer
    fed only by it fires exactly when its input spikes."""
    kernel = params["layers"][layer][path][0]["kernel"]
    params["layers"][layer][path][0]["kernel"] = 2.0 * np.eye(kernel.shape[0])
    return params


def _binary(seed, shape, p):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float64)


def _row(report, layer, source):
    (row,) = [r for r in report["rows"] if r["layer"] == layer and r["source"] == source]
    return row


def _dense_net():
    """input 6 → Dense 6 (kernel 2·I: copies its input spikes) → Dense 5 → readout Dense 3."""
    net = Network((6,), (SpikingLayer((Path(0, (ops.Dense(6, use_bias=False),)),)),
                         SpikingLayer((Path(1, (ops.Dense(5),)),))), (ops.Dense(3),))
    return net, _copy_spikes(_init(net), 0)


def test_dense_accumulates_are_spikes_times_fan_out():
    net, params = _dense_net()
    x = _binary(1, (5, 4, 6), 0.4)  # T = 5, B = 4 spike input
    _, (s1, s2) = simulate.run(net, params, x)
    x, s1, s2 = np.asarray(x), np.asarray(s1), np.asarray(s2)
    np.testing.assert_array_equal(s1, x)  # the spikes are known: layer 1 copies the input
    assert 0 < s2.mean() < 1

    report = energy.count_operations(net, params, x, analog_input=False)
    assert [r["kind"] for r in report["rows"]] == ["AC", "AC", "AC"]
    assert _row(report, 1, 0)["ops_per_inference"] == x.sum() * 6 / 4
    assert _row(report, 2, 1)["ops_per_inference"] == s1.sum() * 5 / 4
    assert _row(report, "readout", 2)["ops_per_inference"] == s2.sum() * 3 / 4
    assert report["ac_per_inference"] == (x.sum() * 6 + s1.sum() * 5 + s2.sum() * 3) / 4
    assert report["mac_per_inference"] == 0
    assert report["ann_mac_per_inference"] == 6 * 6 + 6 * 5 + 5 * 3
    assert [r["dense_macs_per_step"] for r in report["rows"]] == [36, 30, 15]
    np.testing.assert_allclose(report["layer_firing_rates"], [s1.mean(), s2.mean()])
    assert _row(report, "readout", 2)["source_rate"] == pytest.approx(s2.mean())
    assert report["examples"] == 4 and report["time_steps"] == 5


def _brute_force_conv_count(x, k, stride, padding):
    """Σ over output positions of the non-zero inputs (all channels) in each k×k window;
    x [B, H, W, C]. SAME pads as TensorFlow/XLA: total max((out − 1)·s + k − in, 0), low half floor."""
    b, h, w, _ = x.shape
    if padding == "SAME":
        out_h, out_w = -(-h // stride), -(-w // stride)
        low_h = max((out_h - 1) * stride + k - h, 0) // 2
        low_w = max((out_w - 1) * stride + k - w, 0) // 2
    else:
        out_h, out_w, low_h, low_w = (h - k) // stride + 1, (w - k) // stride + 1, 0, 0
    total = 0
    for i in range(out_h):
        for j in range(out_w):
            for di in range(k):
                for dj in range(k):
                    r, c = i * stride - low_h + di, j * stride - low_w + dj
                    if 0 <= r < h and 0 <= c < w:
                        total += int(np.count_nonzero(x[:, r, c, :]))
    return total


def test_conv_accumulates_are_the_non_zero_inputs_of_each_receptive_field():
    """SAME stride 1 (6×6), SAME stride 2 (6×6 → 3×3, padded 0 above and 1 below) and VALID 3×3
    (3×3 → 1×1) on known sparse spike maps; the readout's dense after that conv gets analog input."""
    layers = (SpikingLayer((Path(0, (ops.Conv(4, kernel_size=3),)),)),
              SpikingLayer((Path(1, (ops.Conv(3, kernel_size=3, stride=2),)),)))
    net = Network((6, 6, 2), layers, (ops.Conv(5, kernel_size=3, padding="VALID"), ops.Flatten(), ops.Dense(2)))
    params = _init(net)
    for layer in range(2):
        params["layers"][layer][0][0]["bias"] += 0.5  # fire often enough to be tested
    x = np.asarray(_binary(2, (3, 4, 6, 6, 2), 0.15))  # T = 3, B = 4 sparse spike maps
    _, (s1, s2) = simulate.run(net, params, x)
    s1, s2 = np.asarray(s1), np.asarray(s2)
    assert 0 < s1.mean() < 1 and 0 < s2.mean() < 1
    report = energy.count_operations(net, params, x, analog_input=False)

    def expected(spikes, stride, padding, out_channels):
        return sum(_brute_force_conv_count(spikes[t], 3, stride, padding) for t in range(3)) * out_channels / 4

    assert _row(report, 1, 0)["ops_per_inference"] == expected(x, 1, "SAME", 4)
    assert _row(report, 2, 1)["ops_per_inference"] == expected(s1, 2, "SAME", 3)
    conv_row, dense_row = [r for r in report["rows"] if r["layer"] == "readout"]
    assert conv_row["kind"] == "AC" and conv_row["ops_per_inference"] == expected(s2, 1, "VALID", 5)
    assert dense_row["kind"] == "MAC" and dense_row["ops_per_inference"] == 5 * 2 * 3  # analog: dense × T
    assert [r["dense_macs_per_step"] for r in report["rows"]] == [
        6 * 6 * 4 * 9 * 2, 3 * 3 * 3 * 9 * 4, 1 * 1 * 5 * 9 * 3, 5 * 2]


def test_parameter_free_operators_before_a_synaptic_one_count_their_non_zero_outputs():
    """A ×2.74 scale and a 2×2 average pool before a 1×1 conv: one AC per non-zero pooled value
    and output channel; a global average pool before the readout: one per channel with any spike."""
    conv = ops.Conv(3, kernel_size=1, use_bias=False)
    chain = (ops.Scale(2.74), ops.AvgPool(2), ops.Conv(5, kernel_size=1))
    net = Network((4, 4, 3), (SpikingLayer((Path(0, (conv,)),)), SpikingLayer((Path(1, chain),))),
                  (ops.Scale(2.74), ops.GlobalAvgPool(), ops.Dense(2)))
    params = _init(net)
    params["layers"][0][0][0]["kernel"] = 2.0 * np.eye(3)[None, None]  # copies its input
    x = np.asarray(_binary(3, (3, 2, 4, 4, 3), 0.2))
    _, (s1, s2) = simulate.run(net, params, x)
    np.testing.assert_array_equal(s1, x)
    pooled_any = x.reshape(3, 2, 2, 2, 2, 2, 3).max(axis=(3, 5))  # [T, B, 2, 2, C]: any spike per window
    report = energy.count_operations(net, params, x, analog_input=False)
    assert _row(report, 2, 1)["ops_per_inference"] == pooled_any.sum() * 5 / 2
    channels_any = np.asarray(s2).max(axis=(2, 3))  # [T, B, C]
    assert _row(report, "readout", 2)["ops_per_inference"] == channels_any.sum() * 2 / 2


def test_analog_input_counts_dense_macs_every_step():
    conv = ops.Conv(4, kernel_size=3)
    net = Network((5, 5, 2), (SpikingLayer((Path(0, (conv,)),)),
                              SpikingLayer((Path(1, (ops.Flatten(), ops.Dense(6))),))), (ops.Dense(3),))
    params = _init(net)
    images = np.random.default_rng(4).normal(size=(3, 5, 5, 2))
    x = np.broadcast_to(images, (4,) + images.shape)  # direct encoding, T = 4
    report = energy.count_operations(net, params, x, analog_input=True)
    dense_conv = 5 * 5 * 4 * 3 * 3 * 2  # SAME: every output's full 3×3×C_in window
    first = _row(report, 1, 0)
    assert first["kind"] == "MAC" and first["ops_per_inference"] == dense_conv * 4
    assert report["mac_per_inference"] == dense_conv * 4
    assert [r["kind"] for r in report["rows"][1:]] == ["AC", "AC"]  # spikes from layer 1 on
    _, (s1, s2) = simulate.run(net, params, x)
    assert report["ac_per_inference"] == (np.asarray(s1).sum() * 6 + np.asarray(s2).sum() * 3) / 3
    assert report["ann_mac_per_inference"] == dense_conv + 100 * 6 + 6 * 3
    # The same input read as events counts ACs on its non-zero entries instead.
    assert _row(energy.count_operations(net, params, x, analog_input=False), 1, 0)["kind"] == "AC"


def test_a_silent_layer_costs_nothing_downstream():
    net, params = _dense_net()
    params["layers"][0][0][0]["kernel"] = np.zeros((6, 6))  # layer 1 never fires
    x = _binary(5, (5, 4, 6), 0.5)
    report = energy.count_operations(net, params, x, analog_input=False)
    assert report["layer_firing_rates"][0] == 0.0
    assert _row(report, 2, 1)["ops_per_inference"] == 0.0
    assert _row(report, 1, 0)["ops_per_inference"] == float(np.asarray(x).sum()) * 6 / 4


def test_feedback_paths_count_the_spikes_of_the_previous_step():
    layer1 = SpikingLayer((Path(0, (ops.Dense(4, use_bias=False),)), Path(2, (ops.Dense(4, use_bias=False),))))
    layer2 = SpikingLayer((Path(1, (ops.Dense(4, use_bias=False),)),))
    net = Network((4,), (layer1, layer2), (ops.Dense(2),))
    params = _init(net)
    params = _copy_spikes(_copy_spikes(params, 0), 1)
    params["layers"][0][1][0]["kernel"] = np.zeros((4, 4))  # silent feedback weights
    x = np.asarray(_binary(6, (5, 3, 4), 0.5))
    report = energy.count_operations(net, params, x, analog_input=False)
    # s² = s¹ = x; the feedback path at step t reads s²[t − 1] (nothing at t = 1).
    assert _row(report, 1, 2)["ops_per_inference"] == x[:-1].sum() * 4 / 3
    assert _row(report, 2, 1)["ops_per_inference"] == x.sum() * 4 / 3


def test_dataset_report_sums_batches_and_ignores_padding():
    net, params = _dense_net()
    x = _binary(7, (5, 4, 6), 0.5)
    whole = energy.count_operations(net, params, x, analog_input=False)
    junk = np.ones_like(x[:, :2])  # padding rows, which must not count
    batches = [(np.concatenate([x[:, :2], junk], 1), 2), (np.concatenate([x[:, 2:], junk], 1), 2)]
    split = energy.dataset_report(net, params, batches, analog_input=False)
    assert split["examples"] == 4
    for a, b in zip(whole["rows"], split["rows"]):
        assert a["ops_per_inference"] == pytest.approx(b["ops_per_inference"], rel=1e-12)
    assert split["layer_firing_rates"] == pytest.approx(whole["layer_firing_rates"], rel=1e-12)


def test_energy_arithmetic_and_table():
    report = {"ac_per_inference": 1000.0, "mac_per_inference": 10.0, "ann_mac_per_inference": 100,
              "rows": [], "time_steps": 4, "examples": 1}
    e = energy.energy(report)
    assert e["snn_energy_nj"] == pytest.approx((1000 * 0.9 + 10 * 4.6) / 1000)
    assert e["ann_energy_nj"] == pytest.approx(100 * 4.6 / 1000)
    assert e["snn_to_ann_energy_ratio"] == pytest.approx(0.946 / 0.46)
    assert "estimate" in e["note"] and "Horowitz" in e["note"]
    assert energy.energy(report, pj_per_ac=0.03, pj_per_mac=0.2)["snn_energy_nj"] == pytest.approx(0.032)
    table = energy.format_table(report)
    assert "| **total** | | | AC | 1,000 |" in table and "estimate" in table


def test_train_and_evaluate_writes_the_counts_and_the_estimate(tmp_path):
    from safjax import trainer

    config = ExperimentConfig(epochs=1, num_devices=1, time_steps=2, train_examples=32, test_examples=50,
                              eval_batch_size=32, workdir=str(tmp_path))
    results = trainer.train_and_evaluate(config)
    with open(os.path.join(tmp_path, "results.json")) as f:
        saved = json.load(f)
    ops_report, estimate = saved["synaptic_operations"], saved["energy_estimate"]
    assert ops_report["examples"] == 50 and ops_report["analog_input"] is True
    assert [r["kind"] for r in ops_report["rows"]] == ["MAC", "AC"]  # digits_mlp: direct encoding
    assert ops_report["mac_per_inference"] == 64 * 256 * config.time_steps
    assert ops_report["ann_mac_per_inference"] == 64 * 256 + 256 * 10
    assert estimate["snn_energy_nj"] > 0 and "estimate" in estimate["note"]
    assert results["energy_estimate"] == estimate
