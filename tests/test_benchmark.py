"""The benchmark's deterministic parts: fields, synaptic counts, FLOPs extrapolation — not timings."""

import jax
import pytest

from safjax import benchmark, ops


@pytest.fixture(scope="module")
def records():
    net, params = benchmark.build("digits_mlp", "digits")
    return benchmark.measure(["saf_e", "ottt_o", "bptt", "bptt:remat=true"], net, params, [3], 32,
                             repeats=1, log=lambda _: None)


def test_records_hold_every_field(records):
    fields = {"method", "time_steps", "temp_bytes", "argument_bytes", "output_bytes", "flops",
              "forward_flops", "synaptic_ops_per_step", "step_time_ms", "step_time_min_ms",
              "step_time_max_ms", "compile_time_s"}
    for row in records:
        assert fields <= set(row)
        assert row["temp_bytes"] > 0 and row["flops"] > row["forward_flops"] > 0


def test_saf_halves_ottt_forward_synaptic_work(records):
    by_name = {r["method"]: r for r in records}
    assert by_name["saf_e"]["synaptic_ops_per_step"] == 1.0
    assert by_name["ottt_o"]["synaptic_ops_per_step"] == 2.0
    assert by_name["saf_e"]["forward_flops"] == 0.5 * by_name["ottt_o"]["forward_flops"]
    assert by_name["bptt:remat=true"]["flops"] > by_name["bptt"]["flops"]  # recomputation costs FLOPs
    # MLP 64 → 256 → 10, batch 32, T = 3: forward = 3 steps × 2·32·(64·256 + 256·10) FLOPs.
    assert by_name["bptt"]["forward_flops"] == 3 * 2 * 32 * (64 * 256 + 256 * 10)


def test_conv_weight_gradient_option_reaches_every_conv():
    net, _ = benchmark.build("reference_conv", "cifar10", conv_weight_grad="plain")
    convs = [op for op in net.all_ops() if isinstance(op, ops.Conv)]
    assert len(convs) == 3 and all(op.swapped_weight_grad is False for op in convs)


def test_curves_are_written_as_png(records, tmp_path):
    from safjax import plots

    path = tmp_path / "curves.png"
    plots.benchmark_curves(records, str(path), "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_markdown_table_has_a_row_per_record(records):
    table = benchmark.markdown_table(records).splitlines()
    assert len(table) == 2 + len(records)
    assert all(line.count("|") == table[0].count("|") for line in table)


@pytest.mark.slow
def test_tlbptt_records_carry_costs_and_ratios_to_bptt():
    import reference_nets

    net = reference_nets.build("mlp", 0.5)  # two spiking layers
    params, _, _ = reference_nets.params_and_data(net, 4)
    params = jax.tree_util.tree_map(lambda p: p.astype("float32"), params)  # the benchmark's dtype
    rows = benchmark.measure(["bptt", "tbptt"], net, params, [4], 8, repeats=1, log=lambda _: None,
                             settings={"truncation": 2, "block_size": 1}, baseline="bptt")
    bptt, tbptt = rows
    assert (tbptt["truncation"], tbptt["block_size"]) == (2, 1)
    assert "truncation" not in bptt and bptt["remat"] is False  # the settings reach tbptt only
    assert bptt["temp_bytes_vs_bptt"] == 1.0 and bptt["analytic_macs_vs_bptt"] == 1.0
    assert tbptt["temp_bytes_vs_bptt"] == tbptt["temp_bytes"] / bptt["temp_bytes"]
    assert tbptt["analytic_activation_bytes_vs_bptt"] < 1.0  # one window of one block stored


def test_method_specs_parse_settings_and_refuse_unknown_ones():
    assert benchmark.parse_variant("bptt:remat=true") == ("bptt", {"remat": True})
    assert benchmark.parse_variant("tbptt:truncation=2:window_mode=accumulate") == (
        "tbptt", {"truncation": 2, "window_mode": "accumulate"})
    with pytest.raises(ValueError, match="not setting=value for a setting of saf_e"):
        benchmark.parse_variant("saf_e:remat=true")


def test_a_conditional_backward_is_flagged_as_an_upper_bound():
    """SLTT-K's backward sits in a `lax.cond` (run at K of the T steps): its FLOP count takes the
    larger branch at every step, i.e. SLTT's, and the record and table say it is an upper bound."""
    net, params = benchmark.build("digits_mlp", "digits")
    rows = {r["method"]: r for r in benchmark.measure(["sltt", "sltt_k:backprop_steps=1"], net, params, [3], 32,
                                                       repeats=1, log=lambda _: None)}
    sltt, sltt_k = rows["sltt"], rows["sltt_k:backprop_steps=1"]
    assert sltt["flops_upper_bound"] is False and sltt_k["flops_upper_bound"] is True
    assert sltt_k["flops"] == sltt["flops"] > sltt["forward_flops"] == sltt_k["forward_flops"]
    table = benchmark.markdown_table([sltt, sltt_k]).splitlines()
    assert "| ≤ " not in table[2] and "| ≤ " in table[3]


def test_memory_only_compiles_and_reports_memory_but_no_times():
    """--memory_only's records: the compiled step's memory (equal to a timed run's, since the same
    program is compiled for abstract inputs) and FLOPs, and no step times."""
    import json
    import subprocess
    import sys

    net, params = benchmark.build("digits_mlp", "digits")
    timed = benchmark.measure(["saf_e", "bptt"], net, params, [3], 16, repeats=1, log=lambda _: None)
    lines = []
    rows = benchmark.measure(["saf_e", "bptt"], net, params, [3], 16, log=lines.append, memory_only=True,
                             baseline="bptt")
    for row, reference in zip(rows, timed):
        assert not [name for name in row if name.startswith("step_")]
        assert row["temp_bytes"] == reference["temp_bytes"] > 0
        assert row["argument_bytes"] == reference["argument_bytes"] > 0
        assert row["flops"] == reference["flops"] > 0 and row["alias_bytes"] == 0
        assert benchmark.memory_bytes(row) == row["temp_bytes"] + row["argument_bytes"] + row["output_bytes"]
    assert rows[1]["temp_bytes_vs_bptt"] == 1.0 and "step_time_ms_vs_bptt" not in rows[0]
    assert lines[0].startswith("saf_e, T = 3, batch 16: compiled in") and "bptt, T = 3" in lines[1]
    assert benchmark.markdown_table(rows).splitlines()[2].count("| — |") == 1

    result = subprocess.run([sys.executable, "-m", "experiments.benchmark", "--memory_only", "--time_steps=2",
                             "--batch_size=4", "--methods=saf_e", "--output=/dev/stdout"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert data["memory_only"] is True and data["stem"] is None
    (record,) = data["records"]
    assert record["temp_bytes"] > 0 and "step_time_ms" not in record


def test_the_largest_batch_in_a_budget_is_read_off_a_line():
    rows = [{"batch_size": b, "temp_bytes": 100 + 10 * b, "argument_bytes": 5 * b, "output_bytes": 50}
            for b in (8, 16)]
    fit = benchmark.batch_for_memory(rows, 1000)
    assert fit["intercept_bytes"] == pytest.approx(150) and fit["bytes_per_example"] == pytest.approx(15)
    assert fit["batch"] == 56  # 150 + 15·56 = 990 ≤ 1000 < 150 + 15·57
    assert benchmark.batch_for_memory(rows, 100)["batch"] == 0
    with pytest.raises(ValueError, match="two or more batch sizes"):
        benchmark.batch_for_memory(rows[:1], 1000)


def test_imagenet_shapes_and_a_resnet_stem():
    net, _ = benchmark.build("resnet18", "imagenet2012", width=0.125, stem="imagenet")
    assert (net.input_shape, net.num_classes) == ((224, 224, 3), 1000)
    with pytest.raises(ValueError, match="a stem .* ResNets only; digits_mlp has none"):
        benchmark.build("digits_mlp", "digits", stem="imagenet")
