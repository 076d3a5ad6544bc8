"""Per-layer gradient scales of every method at initialisation, and the first SGD updates.

    python -m experiments.gradient_scales --data=<cifar10-jpeg root> --time_steps=6

On one minibatch of real CIFAR-10 through the VGG-11 preset: per spiking layer, the norm of each
method's gradient (SAF-E summed over its T steps: = OTTT_A's, Theorem 1), the share of neurons
strictly inside spike representation's band 0 < Û/c_T < V_th, on its edges (Û = 0 exactly) and
outside; then ``--steps`` SGD updates of ``--method`` at the preset's learning rate, printing
loss, firing rates and the size of each layer's update. This is the evidence behind
docs/results.md (why SAF-F did not learn at lr 0.1 without gradient clipping).
"""

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "CIFAR-10 image folder root.", required=True)
flags.DEFINE_float("width", 1.0, "VGG-11 channel-width multiplier.")
flags.DEFINE_integer("time_steps", 6, "T.")
flags.DEFINE_integer("batch_size", 32, "Minibatch size.")
flags.DEFINE_string("method", "saf_f", "Method whose first updates are traced.")
flags.DEFINE_integer("steps", 10, "SGD updates to trace (0: none).")
flags.DEFINE_float("learning_rate", 0.1, "SGD learning rate (momentum 0.9).")
flags.DEFINE_float("grad_clip", 0.0, "Global-norm clipping before SGD (0 = off).")


def _layer_norms(tree, key=None):
    """Per spiking layer (then the readout): the norm of all its leaves (or of leaf ``key``)."""
    import jax.numpy as jnp

    def norm(ops):
        return float(jnp.sqrt(sum(jnp.sum(v ** 2) for op in ops for k, v in op.items() if key in (None, k))))

    return [norm([op for path in layer for op in path]) for layer in tree["layers"]] + [norm(tree["readout"])]


def main(argv):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from safjax import train_config as config_lib
    from safjax import datasets, encoding, input_pipeline, methods, models, network, optimizers
    from safjax.methods import bptt, saf, saf_e, saf_f, spike_rep

    train_set = datasets.load(f"image_folder:{FLAGS.data}", "train")
    order = np.random.default_rng(0).permutation(len(train_set))
    model = models.vgg11_sws(nnx.Rngs(0), width=FLAGS.width)
    net, params, T, B = model.network, model.params(), FLAGS.time_steps, FLAGS.batch_size
    config = config_lib.TrainConfig(mse_weight=0.05)

    def batch(i):
        x, y = input_pipeline.make_batch(train_set, order[i * B:(i + 1) * B], augment=False, seed=0,
                                         epoch=0, step=i)
        return encoding.direct(jnp.asarray(x), T), jnp.asarray(y)

    inputs, labels = batch(0)
    grads = {
        "bptt": jax.jit(lambda p: bptt.loss_and_grads(net, p, inputs, labels, config)[1])(params),
        "ottt_a = Σ saf_e": jax.tree_util.tree_map(
            lambda g: g.sum(0), jax.jit(lambda p: saf_e.step_gradients(net, p, inputs, labels, config))(params)),
        "saf_f": jax.jit(lambda p: saf_f.loss_and_grads(net, p, inputs, labels, config)[1])(params),
        "spike_rep": jax.jit(lambda p: spike_rep.loss_and_grads(net, p, inputs, labels, config)[1])(params),
    }
    layers = [f"L{i}" for i in range(1, net.num_layers + 1)] + ["readout"]
    print(f"## Gradient norm per layer at initialisation (T={T}, batch {B}, width {FLAGS.width})\n")
    print("| method | " + " | ".join(layers) + " |\n|---|" + "---|" * len(layers))
    for name, g in grads.items():
        print(f"| {name} | " + " | ".join(f"{v:.3g}" for v in _layer_norms(g)) + " |")

    def band_shares(params, inputs):
        """Per layer: shares of neurons inside SR's band at t = T, on an edge, above, below; rate."""
        leak, state = saf.validate(net, "saf_f"), saf.init_state(net, inputs.shape[1])
        state, _ = jax.lax.scan(lambda s, x: (saf.saf_step(net, leak, params, s, x)[0], None), state, inputs[:-1])
        c = leak * state.c + 1.0
        traces, rows = [leak * state.traces[0] + inputs[-1]], []
        for index, (layer, layer_params) in enumerate(zip(net.layers, params["layers"]), start=1):
            potential = network.layer_current(
                layer, layer_params, lambda src, i=index: traces[src] if src < i else state.traces[src], c)
            z, vth = potential / c, layer.neuron.threshold
            previous = state.traces[index]
            traces.append(leak * previous + (potential - vth * (leak * previous + 1.0) >= 0))
            masks = ((z > 0) & (z < vth), (z == 0) | (z == vth), z > vth, z < 0)
            rows.append([float(jnp.mean(m)) for m in masks] + [float(jnp.mean(traces[-1] / c))])
        return np.array(rows)

    print("\n## Spike representation's band at t = T (share of neurons)\n")
    print("| layer | inside 0 < Û/c_T < V_th | on an edge (Û/c_T = 0 or V_th) | above | below | rate |\n|---|---|---|---|---|---|")
    for index, row in enumerate(band_shares(params, inputs), start=1):
        print(f"| L{index} | " + " | ".join(f"{v:.3f}" for v in row) + " |")

    if not FLAGS.steps:
        return
    optimizer = optimizers.make_optimizer("sgd", FLAGS.learning_rate, 0.9, "constant", 1, 1, FLAGS.grad_clip)
    opt_state, method = optimizer.init(params), methods.get_method(FLAGS.method)
    step = jax.jit(lambda p, s, x, y: method.train_step(net, p, s, x, y, optimizer=optimizer, config=config))
    print(f"\n## First {FLAGS.steps} updates of {FLAGS.method} (SGD {FLAGS.learning_rate}, momentum 0.9, "
          f"grad_clip {FLAGS.grad_clip})\n")
    print("| update | loss | firing rate per layer | ‖Δ bias‖ layer 1 | ‖Δ kernel‖/‖kernel‖ layer 1 "
          "| share inside SR's band, per layer (after the update) |\n|---|---|---|---|---|---|")
    for i in range(FLAGS.steps):
        new, opt_state, metrics = step(params, opt_state, *batch(i))
        delta = jax.tree_util.tree_map(jnp.subtract, new, params)
        relative = _layer_norms(delta, "kernel")[0] / _layer_norms(params, "kernel")[0]
        params = new
        inside = band_shares(params, batch(i + 1)[0])[:, 0]
        print(f"| {i + 1} | {float(metrics.loss):.3f} | {' '.join(f'{float(r):.3f}' for r in metrics.firing_rates)} | "
              f"{_layer_norms(delta, 'bias')[0]:.3f} | {relative:.3f} | {' '.join(f'{v:.2f}' for v in inside)} |")


if __name__ == "__main__":
    app.run(main)
