"""Largest absolute difference of every docs/methods.md §5 identity over the full sweep (4 architectures ×
λ ∈ {0.5, 0.9, 1.0} × V_th ∈ {1.0, 0.7}, float64, T = 4). The tests assert these; this prints them.

    python tests/identity_report.py
"""

import itertools
import pathlib
import sys

import jax

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import identity_helpers as helpers  # noqa: E402
import reference_nets  # noqa: E402
import safjax  # noqa: E402
from safjax.methods import bptt, ottt_a, ottt_o, saf_e, saf_f, spike_rep, tbptt  # noqa: E402


def main():
    worst = {}

    def record(name, value):
        worst[name] = max(worst.get(name, 0.0), value)

    config = safjax.TrainConfig()
    for architecture, leak, threshold in itertools.product(
        reference_nets.ARCHITECTURES, (0.5, 0.9, 1.0), (1.0, 0.7)
    ):
        net = reference_nets.build(architecture, leak, threshold)
        params, inputs, labels = reference_nets.params_and_data(net, 4, 0, threshold)
        lif_out, lif_spikes = safjax.simulate.run(net, params, inputs)
        saf_out, saf_spikes = helpers.saf_forward(net, params, inputs)
        record("1. SAF spikes vs LIF spikes", helpers.max_abs_difference(saf_spikes, lif_spikes))
        record("1. SAF o[t] vs LIF o[t]", helpers.max_abs_difference(saf_out, lif_out))
        record("1. OTTT o[t] vs LIF o[t]",
               helpers.max_abs_difference(helpers.ottt_forward(net, params, inputs, labels), lif_out))
        g_saf = saf_e.step_gradients(net, params, inputs, labels, config)
        g_ottt = ottt_o.step_gradients(net, params, inputs, labels, config)
        record("2. per-step ∇SAF-E vs ∇OTTT", helpers.max_abs_difference(g_saf, g_ottt))
        sgd = optax.sgd(1.0)
        new, _, _ = ottt_a.train_step(net, params, sgd.init(params), inputs, labels, optimizer=sgd, config=config)
        summed = jax.tree_util.tree_map(lambda g: g.sum(0), g_saf)
        record("2. Σ_t ∇SAF-E vs ∇OTTT_A",
               helpers.max_abs_difference(summed, jax.tree_util.tree_map(jnp.subtract, params, new)))
        reference = helpers.reference_ottt_step_gradients(net, params, inputs, labels, config.mse_weight)
        record("3. OTTT vs explicit δ·âᵀ", helpers.max_abs_difference(g_ottt, reference))
        (_, _), g_f = saf_f.loss_and_grads(net, params, inputs, labels, config)
        (_, _), g_sr = spike_rep.loss_and_grads(net, params, inputs, labels, config)
        record("4. ∇SAF-F vs ∇SR (constant 1)", helpers.max_abs_difference(g_f, g_sr))
        momentum = optax.sgd(0.5, momentum=0.9)
        full = tbptt.TBPTTConfig(truncation=4)
        p_t, _, _ = tbptt.train_step(net, params, momentum.init(params), inputs, labels, optimizer=momentum, config=full)
        p_b, _, _ = bptt.train_step(net, params, momentum.init(params), inputs, labels, optimizer=momentum, config=full)
        record("5. TBPTT (K = T) vs BPTT, params after one step", helpers.max_abs_difference(p_t, p_b))
        print(f"done {architecture} λ={leak} V_th={threshold}", file=sys.stderr, flush=True)
    print("| identity (docs/methods.md §5) | largest absolute difference |\n|---|---|")
    for name, value in worst.items():
        print(f"| {name} | {value:.2e} |")


if __name__ == "__main__":
    main()
