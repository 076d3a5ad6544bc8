"""Temporally-truncated local BPTT (docs/methods.md §7): one block with K = T is BPTT, no gradient crosses a
block or window boundary, auxiliary heads learn, memory falls with K and with B, and the
analytic cost model (docs/tlbptt_costs.md) by hand arithmetic."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import safjax
from safjax import costs, local_blocks, losses, ops, simulate
from safjax import network as network_lib
from safjax import neurons as neurons_lib
from safjax.methods import bptt, tbptt

import identity_helpers as helpers
import reference_nets
from budget import first_fast

NUM_STEPS = 4
# The tests compile many small programs on a shared CPU: skipping LLVM's optimisations halves the
# compile time and changes neither the HLO passes (so not the buffer assignment) nor the numbers.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
fast_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)


def params_and_data(net, num_steps, seed=0, batch=reference_nets.BATCH):
    """Like `reference_nets.params_and_data` (float64, non-zero biases, every layer firing at
    roughly 10–50 %) but drawn with NumPy: eager `jax.random` compiles every op for every shape,
    which costs seconds per architecture on a loaded CPU."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda k: safjax.init_params(net, k, jnp.float64), jax.random.PRNGKey(0))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    values = []
    for path, leaf in leaves:
        name = path[-1].key
        if name == "kernel":
            value = 2.0 * rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
        elif name == "bias":
            value = 0.2 + 0.2 * rng.standard_normal(leaf.shape)
        else:  # gain
            value = 3.0 + 0.5 * rng.standard_normal(leaf.shape)
        values.append(jnp.asarray(value, jnp.float64))
    params = jax.tree_util.tree_unflatten(treedef, values)
    inputs = jnp.asarray(1.5 * rng.uniform(size=(num_steps, batch) + net.input_shape))
    labels = jnp.asarray(rng.integers(0, net.num_classes, batch), jnp.int32)
    return params, inputs, labels


def _setup(architecture, leak=0.5, num_steps=NUM_STEPS, block_size=None, seed=0):
    net = reference_nets.build(architecture, leak)
    params, inputs, labels = params_and_data(net, num_steps, seed)
    config = tbptt.TBPTTConfig(block_size=block_size)
    full = tbptt.init_params(net, params, config, jax.random.PRNGKey(7))
    return net, params, full, inputs, labels


def _train(net, params, inputs, labels, config, optimizer):
    step = fast_jit(lambda p, s, x, y: tbptt.train_step(net, p, s, x, y, optimizer=optimizer, config=config))
    return step(params, optimizer.init(params), inputs, labels)


# --- one block, K = T: exactly BPTT --------------------------------------------------------------

CASES = [("mlp", 1.0, "accumulate", "all")]  # architecture, leak (1.0: IF), window mode, B ("all": N)
SLOW_CASES = [
    (a, leak, mode, b)
    for a in reference_nets.ARCHITECTURES for leak in (0.5, 1.0)
    for mode in ("update", "accumulate") for b in ("all", None)
    if (a, leak, mode, b) not in CASES
]


def _check_one_block_equals_bptt(architecture, leak, mode, block_size):
    net = reference_nets.build(architecture, leak)
    block_size = net.num_layers if block_size == "all" else block_size
    _, params, full, inputs, labels = _setup(architecture, leak, block_size=block_size)
    optimizer = optax.sgd(0.3, momentum=0.9)
    config = tbptt.TBPTTConfig(truncation=NUM_STEPS, window_mode=mode, block_size=block_size)
    p_t, _, m_t = _train(net, full, inputs, labels, config, optimizer)
    p_b, _, m_b = fast_jit(functools.partial(
        bptt.train_step, net, optimizer=optimizer, config=tbptt.TBPTTConfig()
    ))(params, optimizer.init(params), inputs, labels)
    if block_size is not None:
        assert p_t["aux"] == ()
    chex.assert_trees_all_close(tbptt.network_params(p_t), p_b, atol=1e-12, rtol=0)
    np.testing.assert_allclose(m_t.loss, m_b.loss, rtol=1e-12)
    np.testing.assert_allclose(m_t.outputs, m_b.outputs, rtol=1e-12)
    chex.assert_trees_all_close(m_t.firing_rates, m_b.firing_rates, atol=1e-12)
    assert helpers.max_abs_difference(p_b, params) > 1e-3  # the update is not trivially zero


@pytest.mark.parametrize("architecture,leak,mode,block_size", CASES)
def test_one_block_with_full_window_equals_bptt(architecture, leak, mode, block_size):
    _check_one_block_equals_bptt(architecture, leak, mode, block_size)


@pytest.mark.slow
@pytest.mark.parametrize("architecture,leak,mode,block_size", SLOW_CASES)
def test_one_block_with_full_window_equals_bptt_sweep(architecture, leak, mode, block_size):
    _check_one_block_equals_bptt(architecture, leak, mode, block_size)


@pytest.mark.slow
@pytest.mark.parametrize("architecture,mode", [("skip", "accumulate"), ("feedback", "update")])
def test_block_size_of_all_layers_equals_global_truncated_training(architecture, mode):
    num_steps = 4 if mode == "accumulate" else 5  # 5: a remainder window
    net, params, _, inputs, labels = _setup(architecture, 0.9, num_steps=num_steps)
    optimizer = optax.sgd(0.3, momentum=0.9)
    local = tbptt.TBPTTConfig(truncation=2, window_mode=mode, block_size=net.num_layers + 1)
    full = tbptt.init_params(net, params, local, jax.random.PRNGKey(0))
    p_local, _, m_local = _train(net, full, inputs, labels, local, optimizer)
    global_config = tbptt.TBPTTConfig(truncation=2, window_mode=mode)
    p_global, _, m_global = _train(net, params, inputs, labels, global_config, optimizer)
    chex.assert_trees_all_close(p_local["network"], p_global, atol=1e-12, rtol=0)
    np.testing.assert_allclose(m_local.loss, m_global.loss, rtol=1e-12)


# --- no gradient crosses a block boundary --------------------------------------------------------


def reference_block_losses(net, params, inputs, labels, block_size, detach, mse_weight=0.05):
    """Every block's loss over one window (K = T) in ONE graph, all layers stepped together
    (independent of `tbptt`'s block-by-block code); a signal crossing a block boundary passes
    through `stop_gradient` when ``detach``. Returns ``[L_1, ..., L_J]``."""
    blocks = local_blocks.partition(net, block_size)
    block_of = {0: -1} | {l: j for j, b in enumerate(blocks) for l in b.layers}
    net_params, aux = params["network"], params["aux"]
    num_steps = inputs.shape[0]
    state = simulate.init_network_state(net, inputs.shape[1], inputs.dtype)
    sums, main = [0.0] * (len(blocks) - 1), 0.0
    for t in range(num_steps):
        spikes, new_state = [inputs[t]], []
        for l, (layer, layer_params) in enumerate(zip(net.layers, net_params["layers"]), start=1):

            def signal_of(source, l=l):
                value = spikes[source] if source < l else state[source - 1].s
                crosses = block_of[source] != block_of[l]
                return jax.lax.stop_gradient(value) if detach and crosses else value

            current = network_lib.layer_current(layer, layer_params, signal_of, 1.0)
            layer_state, s = neurons_lib.lif_step(layer.neuron, state[l - 1], current)
            new_state.append(layer_state)
            spikes.append(s)
        state = tuple(new_state)
        sums = [acc + spikes[b.layers[-1]] for acc, b in zip(sums, blocks)]
        output = network_lib.readout(net, net_params, spikes[-1], 1.0)
        main = main + losses.ce_mse_loss(output, labels, mse_weight) / num_steps
    block_losses = []
    for acc, head in zip(sums, aux):
        rate = acc / num_steps
        features = rate.mean(axis=(1, 2)) if rate.ndim == 4 else rate
        logits = features @ head["kernel"] + head["bias"]
        block_losses.append(losses.ce_mse_loss(logits, labels, mse_weight))  # weight K/T = 1
    return block_losses + [main]


def _first_block_leaves(grads, net, block_size):
    first = local_blocks.partition(net, block_size)[0]
    layers = [grads["network"]["layers"][l - 1] for l in first.layers]
    return jax.tree_util.tree_leaves((layers, grads["aux"][0]))


@pytest.mark.parametrize("architecture,block_size", [
    ("feedback", 1),
    pytest.param("skip", 2, marks=pytest.mark.slow),
    pytest.param("conv", 1, marks=pytest.mark.slow),
])
def test_no_gradient_crosses_a_block_boundary(architecture, block_size):
    net, _, full, inputs, labels = _setup(architecture, 0.9, block_size=block_size)
    config = tbptt.TBPTTConfig(block_size=block_size)

    @fast_jit
    def reference(p):
        def total(p, detach, first_block):
            block_losses = reference_block_losses(net, p, inputs, labels, block_size, detach)
            return sum(block_losses[first_block:]), block_losses[-1]

        grads = {
            (detach, first): jax.grad(total, has_aux=True)(p, detach, first)[0]
            for detach, first in ((True, 0), (True, 1), (False, 1))
        }
        return grads, total(p, True, 0)[1]

    grads_ref, main_loss = reference(full)
    # Later blocks' losses reach the first block's params only through the joint graph.
    detached, joint = grads_ref[True, 1], grads_ref[False, 1]
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in _first_block_leaves(detached, net, block_size))
    assert max(float(jnp.max(jnp.abs(g))) for g in _first_block_leaves(joint, net, block_size)) > 1e-4

    # The method's window gradient is the detached one — every block trained by its own loss.
    state = simulate.init_network_state(net, inputs.shape[1], inputs.dtype)
    window_grads = tbptt.window_gradients(net, config, NUM_STEPS)
    (loss, _), grads = fast_jit(window_grads)(full, state, inputs, labels)
    np.testing.assert_allclose(loss, main_loss, rtol=1e-12)
    chex.assert_trees_all_close(grads, grads_ref[True, 0], atol=1e-12, rtol=0)
    # Auxiliary heads learn.
    assert all(float(jnp.max(jnp.abs(g))) > 0.0 for g in jax.tree_util.tree_leaves(grads["aux"]))


@pytest.mark.slow
def test_readout_gradient_equals_training_the_last_block_alone():
    """mlp, B = 1: the last block (layer 2 + readout) trained by truncated BPTT as a network of its
    own, on layer 1's recorded spikes as a constant input, gets the same gradient."""
    net, params, full, inputs, labels = _setup("mlp", 0.9, block_size=1)
    config = tbptt.TBPTTConfig(truncation=2, window_mode="accumulate", block_size=1)
    sgd = optax.sgd(1.0)  # accumulate + lr 1: params − new params = Σ_windows gradients
    p_new, _, _ = _train(net, full, inputs, labels, config, sgd)
    grads = jax.tree_util.tree_map(jnp.subtract, full, p_new)

    _, spikes = simulate.run(net, params, inputs)
    layer2 = net.layers[1]
    alone = safjax.Network(
        (16,), [safjax.SpikingLayer([safjax.Path(0, layer2.paths[0].ops)], layer2.neuron)], net.readout
    )
    alone_params = {"layers": [params["layers"][1]], "readout": params["readout"]}
    alone_config = tbptt.TBPTTConfig(truncation=2, window_mode="accumulate")
    p_alone, _, _ = _train(alone, alone_params, spikes[0], labels, alone_config, sgd)
    alone_grads = jax.tree_util.tree_map(jnp.subtract, alone_params, p_alone)
    chex.assert_trees_all_close(grads["network"]["readout"], alone_grads["readout"], atol=1e-12, rtol=0)
    chex.assert_trees_all_close(grads["network"]["layers"][1], alone_grads["layers"][0], atol=1e-12, rtol=0)
    assert helpers.max_abs(grads["aux"]) > 1e-6


# --- no gradient crosses a window boundary -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("block_size", [1, None])
def test_window_boundary_state_carries_no_gradient(block_size):
    net, params, full, inputs, labels = _setup("mlp", 0.9, block_size=block_size)
    config = tbptt.TBPTTConfig(truncation=2, block_size=block_size)
    window_grads = tbptt.window_gradients(net, config, NUM_STEPS)
    state0 = simulate.init_network_state(net, inputs.shape[1], inputs.dtype)
    first, second = inputs[:2], inputs[2:]

    def second_window_loss(p_first, p_second):
        (_, (state, _, _)), _ = window_grads(p_first, state0, first, labels)
        (loss, _), _ = window_grads(p_second, state, second, labels)
        return loss

    @fast_jit
    def probe(p, perturbed):
        # An independent forward of the first window gives the state the second starts from.
        state1, _ = jax.lax.scan(
            lambda s, x: (simulate.network_step(net, tbptt.network_params(p), s, x)[0], None), state0, first
        )
        return (
            second_window_loss(perturbed, p) - second_window_loss(p, p),
            jax.grad(second_window_loss, argnums=0)(p, p),
            base_add(window_grads(p, state0, first, labels)[1], window_grads(p, state1, second, labels)[1]),
        )

    change, through_state, window_sum = probe(full, jax.tree_util.tree_map(lambda p: 1.1 * p, full))
    # The earlier window's params change the later loss's value (through the forward state) …
    assert abs(float(change)) > 1e-6
    # … but not its gradient: the carried state is a constant.
    assert helpers.max_abs(through_state) == 0.0
    # The method's accumulated gradient is Σ of the windows' gradients, the second computed from
    # the state of an independent forward passed in as a plain input.
    accumulate = tbptt.TBPTTConfig(truncation=2, window_mode="accumulate", block_size=block_size)
    p_new, _, _ = _train(net, full, inputs, labels, accumulate, optax.sgd(1.0))
    chex.assert_trees_all_close(jax.tree_util.tree_map(jnp.subtract, full, p_new), window_sum, atol=1e-12, rtol=0)


def base_add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


# --- memory falls with K and with B --------------------------------------------------------------


def _wide_net(num_layers=4, width=128):
    neuron = safjax.lif(0.5)
    layers = [
        safjax.SpikingLayer([safjax.Path(l, [ops.Dense(width)])], neuron) for l in range(num_layers)
    ]
    return safjax.Network((64,), layers, [ops.Dense(10)])


def _train_step_temp_bytes(net, config, num_steps=8, batch=64):
    params, inputs, labels = params_and_data(net, num_steps, batch=batch)
    params = tbptt.init_params(net, params, config, jax.random.PRNGKey(1))
    optimizer = optax.sgd(0.1)

    def step(p, s, x, y):
        return tbptt.train_step(net, p, s, x, y, optimizer=optimizer, config=config)

    memory = costs.compiled_memory(
        step, params, optimizer.init(params), inputs, labels, compiler_options=FAST_COMPILE
    )
    return memory["temp_bytes"]


@pytest.mark.slow
@pytest.mark.parametrize("block_size", [None, 1])
def test_compiled_memory_falls_with_truncation(block_size):
    net = _wide_net(num_layers=2)
    temp = [
        _train_step_temp_bytes(net, tbptt.TBPTTConfig(truncation=k, block_size=block_size))
        for k in (8, 4, 2, 1)
    ]
    print(f"temp bytes, B = {block_size}, K = 8, 4, 2, 1:", temp)
    assert all(a > b for a, b in zip(temp, temp[1:])), temp
    assert temp[-1] < 0.6 * temp[0], temp


@pytest.mark.slow
def test_compiled_memory_falls_with_block_size():
    net = _wide_net()
    temp = [_train_step_temp_bytes(net, tbptt.TBPTTConfig(block_size=b)) for b in (4, 2, 1)]
    print("temp bytes, B = 4, 2, 1:", temp)
    assert all(a > b for a, b in zip(temp, temp[1:])), temp
    assert temp[-1] < 0.5 * temp[0], temp


# --- params layout, hooks, errors ---------------------------------------------------------------


def test_method_hooks_and_params_layout():
    net = reference_nets.build("conv")
    params, _, _ = params_and_data(net, 1)
    key = jax.random.PRNGKey(1)
    for name in ("bptt", "saf_e", "ottt_a"):  # every other method: plain network params
        method = safjax.get_method(name)
        assert method.init_params(net, params, key) is params
        assert method.network_params(params) is params
    assert safjax.get_method("tbptt").init_params(net, params, key) is params
    method = safjax.get_method("tbptt", block_size=1)
    full = method.init_params(net, params, key)
    assert method.network_params(full) is params
    (head,) = full["aux"]  # two layers, B = 1: one auxiliary head, on layer 1's 4 channels
    chex.assert_shape((head["kernel"], head["bias"]), ((4, reference_nets.NUM_CLASSES), (reference_nets.NUM_CLASSES,)))
    assert full["aux"][0]["kernel"].dtype == params["readout"][-1]["kernel"].dtype


def test_partition_of_feedback_and_skip_networks():
    B = local_blocks.Block
    assert local_blocks.partition(reference_nets.build("feedback"), 1) == (
        B((1,), (0,), (3,), (1,), False), B((2,), (1,), (), (2,), False), B((3,), (2,), (), (), True),
    )
    assert local_blocks.partition(reference_nets.build("feedback"), 2) == (
        B((1, 2), (0,), (3,), (2,), False), B((3,), (2,), (), (), True),
    )
    assert local_blocks.partition(reference_nets.build("skip"), 2) == (
        B((1, 2), (0,), (), (1, 2), False), B((3,), (0, 1, 2), (), (), True),
    )
    assert local_blocks.partition(reference_nets.build("skip"), 9) == local_blocks.partition(
        reference_nets.build("skip"), None
    )


@pytest.mark.parametrize("block_size", [0, -1, 1.5, True, "2"])
def test_bad_block_size_raises(block_size):
    with pytest.raises(ValueError, match="`block_size` must be None or an int ≥ 1"):
        tbptt.TBPTTConfig(block_size=block_size)
    with pytest.raises(ValueError, match="`truncation`"):
        tbptt.TBPTTConfig(truncation=0, block_size=1)


def test_params_that_do_not_match_the_block_size_raise():
    net, params, _, inputs, labels = _setup("feedback")
    sgd = optax.sgd(0.1)

    def run(p, block_size):
        config = tbptt.TBPTTConfig(block_size=block_size)
        return tbptt.train_step(net, p, sgd.init(p), inputs, labels, optimizer=sgd, config=config)

    with pytest.raises(ValueError, match="trains 2 auxiliary classifier"):
        run(params, 1)
    with pytest.raises(ValueError, match="trains 2 auxiliary classifier"):  # heads made for B = 2
        run(tbptt.init_params(net, params, tbptt.TBPTTConfig(block_size=2), jax.random.PRNGKey(0)), 1)
    with pytest.raises(ValueError, match="`block_size` is None"):
        run(tbptt.init_params(net, params, tbptt.TBPTTConfig(block_size=1), jax.random.PRNGKey(0)), None)


@pytest.mark.slow
def test_local_training_compiles_once_and_learns():
    net = reference_nets.build("mlp")
    params, inputs, labels = params_and_data(net, 4)
    method = safjax.get_method("tbptt", truncation=2, block_size=1)
    params = method.init_params(net, params, jax.random.PRNGKey(3))
    optimizer = optax.adam(3e-2)
    step = safjax.make_train_step(method, net, optimizer)
    opt_state = optimizer.init(params)
    first = None
    for _ in range(10):
        params, opt_state, metrics = step(params, opt_state, inputs, labels)
        first = float(metrics.loss) if first is None else first
    assert step._cache_size() == 1
    assert float(metrics.loss) < 0.85 * first
    chex.assert_tree_all_finite(params)


# --- analytic costs ------------------------------------------------------------------------------


def _two_layer_net():
    neuron = safjax.lif()
    layers = [
        safjax.SpikingLayer([safjax.Path(0, [ops.Dense(3)])], neuron),
        safjax.SpikingLayer([safjax.Path(1, [ops.Dense(2)])], neuron),
    ]
    return safjax.Network((4,), layers, [ops.Dense(2)])


def test_analytic_costs_by_hand():
    """4 → 3 → 2 → readout 2, batch 1, T = 4, K = 2 (two windows), B = 1 (two blocks), 4 bytes."""
    c = costs.tlbptt_costs(_two_layer_net(), 4, 2, 1, 1, bytes_per_value=4, window_mode="update")
    # MACs per step and example: 4·3 + 3·2 + 2·2 = 22. BPTT: forward + weight gradients + input
    # gradients of layer 2 (6) and the readout (4); layer 1's input is data.
    assert c["bptt"]["macs"] == 4 * 22 + 4 * 22 + 4 * (6 + 4) == 216
    # TL: layer 2's input is detached (no input gradient); aux head 3 → 2 on layer 1:
    # forward, weight and input gradient once per window, 2 windows.
    assert c["macs_breakdown"] == {
        "forward": 88, "weight_grad": 88, "input_grad": 4 * 4, "aux": 2 * 3 * (3 * 2), "feedback_forward": 0,
    }
    assert c["macs"] == 228
    # Activations: BPTT keeps u, s of 5 neurons for 4 steps; TL the larger of block 1 (u, s of 3
    # neurons for 2 steps + 3 pooled features) and block 2 (u, s of 2 neurons + layer 1's
    # recorded spikes, for 2 steps).
    assert c["bptt"]["activation_bytes"] == 4 * (4 * 2 * 5) == 160
    assert c["activation_bytes"] == 4 * max(2 * 2 * 3 + 3, 2 * (2 * 2 + 3)) == 60
    # Memory accesses (values). Forward per step: each op reads input + weights (+bias), writes
    # output: (4+3+15) + (3+2+8) + (2+2+6); each neuron 5 accesses.
    forward = 4 * ((4 + 3 + 15) + (3 + 2 + 8) + (2 + 2 + 6) + 5 * 5)
    # Backward per step: neurons 5 each; weight gradients (in + out + 2·params); input gradients
    # (in + out + params) for layer 2 (BPTT only) and the readout.
    backward_tl = 4 * (5 * 5 + (4 + 3 + 2 * 15) + (3 + 2 + 2 * 8) + (2 + 2 + 2 * 6) + (2 + 2 + 6))
    backward_bptt = backward_tl + 4 * (3 + 2 + 8)
    # Aux head (3 features, 8 params): 4 per neuron-step on layer 1, then per window
    # 2·3 + 5·3 + 3·2 + 4·8.
    aux = 4 * 3 * 4 + 2 * (2 * 3 + 5 * 3 + 3 * 2 + 4 * 8)
    # Optimizer (SGD): 3 per param per update; TL updates twice, on 29 + 8 params.
    assert c["memory_access_breakdown"] == {
        "forward": 4 * forward, "backward": 4 * backward_tl, "aux": 4 * aux,
        "feedback_forward": 0, "optimizer": 4 * 3 * 37 * 2,
    }
    assert c["bptt"]["memory_accesses"] == 4 * (forward + backward_bptt + 3 * 29) == 3420
    assert c["relative"] == {
        "macs": 228 / 216, "memory_accesses": c["memory_accesses"] / 3420, "activation_bytes": 60 / 160,
    }


@pytest.mark.parametrize("architecture", first_fast(reference_nets.ARCHITECTURES))
@pytest.mark.parametrize("window_mode", ["update", "accumulate"])
def test_analytic_costs_of_bptt_settings_are_bptt(architecture, window_mode):
    net = reference_nets.build(architecture)
    for truncation, block_size in [(None, None), (6, net.num_layers), (9, 7)]:
        c = costs.tlbptt_costs(net, 6, truncation, block_size, 3, window_mode=window_mode)
        assert c["relative"] == {"macs": 1.0, "memory_accesses": 1.0, "activation_bytes": 1.0}
    local = costs.tlbptt_costs(net, 6, 2, 1, 3, window_mode=window_mode)
    assert local["relative"]["activation_bytes"] < 0.5
    feedback = local["macs_breakdown"]["feedback_forward"]
    assert (feedback > 0) == (architecture == "feedback")
