"""Temporally-truncated local BPTT (docs/methods.md §7).

Truncation K: split T into ⌈T/K⌉ windows; in each window unroll K steps from the carried state,
take the gradient of that window's loss, then update (``window_mode="update"``, default) or
accumulate for one update at the end; the state carried into the next window is detached.

Local blocks (``block_size = B``): the spiking layers are partitioned into blocks of B
layers (`safjax.local_blocks`); each block's input is the detached spikes of the others and each
block is trained by its own loss only. With K_w the window's length (K, or the remainder):

    last block:   L(w)   = Σ_{t∈w} ℓ(o[t], y) / T                 the network's readout, as BPTT
    block j < J:  L_j(w) = (K_w / T) · ℓ(z_j(w), y)              z_j = aux classifier on the
                                                                   window-mean spikes
    ℓ = losses.ce_mse_loss with γ = config.mse_weight

Summed over the windows, each is a T-weighted average of one classification loss, and one
block with K = T is exactly BPTT. Within a window the blocks run one after the other — forward
over the window and backward of block j, then block j + 1 from block j's recorded, detached
spikes — so only one block's residuals over one window are live at a time. A feedback path from
a later block reads that block's spikes at t − 1, recorded by a gradient-free forward of the
window run first (one extra forward of the window, only for such networks).

Params: without ``block_size`` the network's params; with it
``{"network": network params, "aux": ({"kernel", "bias"} per block but the last)}`` — use
`init_params` and `network_params`. The reported loss is the network's (last block's) loss.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from safjax import train_config as config_lib
from safjax import local_blocks, losses
from safjax import network as network_lib
from safjax import simulate
from safjax.methods import base, bptt

NAME = "tbptt"
WINDOW_MODES = ("update", "accumulate")


@dataclasses.dataclass(frozen=True)
class TBPTTConfig(config_lib.TrainConfig):
    """`TrainConfig` plus TBPTT's own settings (what the functions of this file read).

    Attributes:
      truncation: window length K (None → K = T, which is BPTT).
      window_mode: ``"update"`` after each window or ``"accumulate"`` over windows.
      block_size: local blocks of B spiking layers, each but the last ending in an auxiliary
        classifier trained by its own loss (None → one block, global training; B ≥ the number of
        layers is also one block).
      remat: rematerialise √K-step chunks of each window in the backward pass.
    """

    truncation: int | None = None
    window_mode: str = "update"
    block_size: int | None = None
    remat: bool = False

    def __post_init__(self):
        super().__post_init__()
        for name in ("truncation", "block_size"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"`{name}` must be None or an int ≥ 1, got {value!r}.")
        if self.window_mode not in WINDOW_MODES:
            raise ValueError(f"`window_mode` must be one of {WINDOW_MODES}, got {self.window_mode!r}.")


def window_length(truncation: int | None, num_steps: int) -> int:
    """The window K for ``num_steps`` = T: ``truncation`` clamped to T, None meaning K = T."""
    return min(truncation or num_steps, num_steps)


def init_params(net: network_lib.Network, network_params, config: TBPTTConfig, key):
    """The params `train_step` trains: the network's, plus one auxiliary head per block but the
    last when ``config.block_size`` is set."""
    if config.block_size is None:
        return network_params
    dtype = jax.tree_util.tree_leaves(network_params)[0].dtype
    aux = local_blocks.init_aux_params(net, config.block_size, key, dtype)
    return {"network": network_params, "aux": aux}


def _has_aux_heads(params) -> bool:
    return isinstance(params, dict) and set(params) == {"network", "aux"}


def network_params(params):
    """The network's params out of `init_params`' layout (either layout)."""
    return params["network"] if _has_aux_heads(params) else params


def _check_params(net, params, config) -> None:
    if config.block_size is None:
        if _has_aux_heads(params):
            raise ValueError(
                "tbptt: params hold auxiliary heads but `block_size` is None; pass the network "
                "params (`tbptt.network_params(params)`) or set `block_size`."
            )
        return
    num_heads = len(local_blocks.partition(net, config.block_size)) - 1
    if not _has_aux_heads(params) or len(params["aux"]) != num_heads:
        raise ValueError(
            f"tbptt with block_size={config.block_size} trains {num_heads} auxiliary "
            "classifier(s): params must be {'network': ..., 'aux': (one head per block but the "
            "last)}: pass method.init_params(net, model.params(), key) of a tbptt method with the "
            "same block_size; after training, method.network_params(params) gives the network's back."
        )


def _scan(step, carry, xs, unroll, remat):
    """`lax.scan`, or with ``remat`` a scan over √K-step chunks each under `jax.checkpoint`."""
    if not remat:
        return jax.lax.scan(step, carry, xs, unroll=unroll)
    length = jax.tree_util.tree_leaves(xs)[0].shape[0]
    chunk = bptt.remat_chunk(length)
    chunked = jax.tree_util.tree_map(lambda x: x.reshape((length // chunk, chunk) + x.shape[1:]), xs)
    body = jax.checkpoint(lambda c, x: jax.lax.scan(step, c, x, unroll=unroll))
    carry, ys = jax.lax.scan(body, carry, chunked)
    return carry, jax.tree_util.tree_map(lambda y: y.reshape((length,) + y.shape[2:]), ys)


def _scoped(fn, pred, *operands):
    """``fn(*operands)`` as a conditional whose two branches are both ``fn``: the same value
    whatever ``pred`` holds, but XLA allocates a branch's temporaries in the branch's own
    computation, and those of different conditionals share memory. Sequential blocks written
    as plain code do not (XLA:CPU gives every `lax.scan` at one level its own buffers, and
    drops `optimization_barrier` before scheduling), so this is what makes memory fall with B.
    """
    return jax.lax.cond(pred, fn, fn, *operands)


def block_loss(net: network_lib.Network, block: local_blocks.Block, num_steps: int, config):
    """``loss((layer params, head params), state, now, prev, labels)`` of one block over a window.

    ``now[k]`` / ``prev[k]``: [K, B, ...] per source (see `local_blocks.block_step`). Returns
    ``(L_j, (state, {k: s^k [K, B, ...]} for block.outputs, Σ_t o[t] [B, C] or None,
    Σ_t rates[t] per layer))``.
    """
    first = block.layers[0]

    def loss_fn(block_params, state, now, prev, labels):
        layer_params, head = block_params
        window = jax.tree_util.tree_leaves(now)[0].shape[0]

        def step(carry, signals):
            state, total = carry
            state, spikes = local_blocks.block_step(net, block, layer_params, state, *signals)
            records = {k: spikes[k - first] for k in block.outputs}
            if block.last:
                output = network_lib.apply_chain(net.readout, head, spikes[-1], 1.0)
                loss = losses.ce_mse_loss(output, labels, config.mse_weight) / num_steps
                total = total + output
            else:
                loss = jnp.zeros((), total.dtype)
                total = total + spikes[-1]
            return (state, total), (loss, records, base.mean_rates(spikes))

        last_shape = net.layer_shapes[block.layers[-1] - 1]
        dtype = now[block.inputs[0]].dtype
        batch = now[block.inputs[0]].shape[1]
        total_shape = (batch, net.num_classes) if block.last else (batch,) + last_shape
        carry = (state, jnp.zeros(total_shape, dtype))
        (state, total), (step_losses, records, rates) = _scan(
            step, carry, (now, prev), config.unroll, config.remat
        )
        rates = tuple(r.sum(0) for r in rates)
        if block.last:
            return step_losses.sum(), (state, records, total, rates)
        head_op = local_blocks.aux_head(net)
        logits = head_op.apply(head, local_blocks.global_pool(total / window))
        loss = losses.ce_mse_loss(logits, labels, config.mse_weight) * (window / num_steps)
        return loss, (state, records, None, rates)

    return loss_fn


def block_window_grads(net: network_lib.Network, config, num_steps: int):
    """``grads(params, state, inputs [K, B, ...], labels) -> ((L, (state, Σo, Σrates)), grads)``
    for one window with local blocks: L is the last block's loss, grads every block's own
    gradient, state the detached network state at the window's end.

    Each block — forward over the window and backward — runs as one scoped unit (`_scoped`),
    so only one block's residuals are live at a time; what crosses to later blocks is the
    detached spikes they read (``block.outputs``, [K, B, ...] each) and the block's gradient.
    """
    blocks = local_blocks.partition(net, config.block_size)
    feedback = sorted({k for b in blocks for k in b.feedback})

    def run_block(block, block_params, block_state, now, prev, labels):
        grad_fn = jax.value_and_grad(block_loss(net, block, num_steps, config), has_aux=True)
        (loss, (block_state, records, total, rates)), grads = grad_fn(
            block_params, block_state, now, prev, labels
        )
        detached = jax.lax.stop_gradient((block_state, records))
        return loss, detached[0], detached[1], total, rates, grads

    def window_grads(params, state, inputs, labels):
        net_params, aux = params["network"], params["aux"]
        signals, prev = {0: inputs}, {}
        if feedback:
            recorded = local_blocks.record_spikes(
                net, net_params, state, inputs, feedback, config.unroll
            )
            prev = {
                k: jnp.concatenate([jax.lax.stop_gradient(state[k - 1].s)[None], recorded[k][:-1]])
                for k in feedback
            }
        pred = labels[0] < 0  # any runtime boolean: both branches of `_scoped` are the same
        num = net.num_layers
        layer_grads, new_state, rates = [None] * num, [None] * num, [None] * num
        aux_grads = []
        for j, block in enumerate(blocks):
            head = net_params["readout"] if block.last else aux[j]
            operands = (
                (tuple(net_params["layers"][l - 1] for l in block.layers), head),
                tuple(state[l - 1] for l in block.layers),
                {k: signals[k] for k in block.inputs},
                {k: prev[k] for k in block.feedback},
                labels,
            )
            run = functools.partial(run_block, block)
            if len(blocks) > 1:
                outs = _scoped(run, pred, *operands)
            else:
                outs = run(*operands)
            loss, block_state, records, total, block_rates, (g_layers, g_head) = outs
            signals.update(records)
            if not block.last:
                aux_grads.append(g_head)
            for offset, l in enumerate(block.layers):
                layer_grads[l - 1] = g_layers[offset]
                new_state[l - 1] = block_state[offset]
                rates[l - 1] = block_rates[offset]
        net_grads = {
            **net_params,
            "layers": type(net_params["layers"])(layer_grads),
            "readout": g_head,
        }
        grads = {"network": net_grads, "aux": type(aux)(aux_grads)}
        return (loss, (tuple(new_state), total, tuple(rates))), grads

    return window_grads


def global_window_grads(net: network_lib.Network, config, num_steps: int):
    """`block_window_grads`' contract for one block (plain network params): BPTT over the window."""
    sequence_loss = bptt.sequence_loss(net, config, num_steps, config.remat)

    def window_loss(params, state, inputs, labels):
        loss, (state, output, rates) = sequence_loss(params, state, inputs, labels)
        return loss, (jax.lax.stop_gradient(state), output, rates)

    return jax.value_and_grad(window_loss, has_aux=True)


def window_gradients(net: network_lib.Network, config, num_steps: int):
    """The per-window gradient function `train_step` uses (for tests and analysis)."""
    if config.block_size is None:
        return global_window_grads(net, config, num_steps)
    return block_window_grads(net, config, num_steps)


def _scan_windows(window_grads, state, params, opt_state, grad_sum, windows, labels, optimizer):
    """Scan over windows [n, K, B, ...]: a gradient per window, then an update or a sum."""

    def body(carry, x_window):
        params, opt_state, state, grad_sum, totals = carry
        (loss, (state, output, rates)), grads = window_grads(params, state, x_window, labels)
        if grad_sum is None:
            params, opt_state = base.apply_gradients(optimizer, grads, opt_state, params)
        else:
            grad_sum = base.tree_add(grad_sum, grads)
        totals = base.tree_add(totals, (loss, output, rates))
        return (params, opt_state, state, grad_sum, totals), None

    loss, (_, output, rates) = jax.eval_shape(window_grads, params, state, windows[0], labels)[0]
    totals = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), (loss, output, rates))
    carry = (params, opt_state, state, grad_sum, totals)
    (params, opt_state, state, grad_sum, totals), _ = jax.lax.scan(body, carry, windows)
    return params, opt_state, state, grad_sum, totals


def train_step(net: network_lib.Network, params, opt_state, inputs, labels, *, optimizer,
               config: TBPTTConfig, key=None):
    """One minibatch: inputs [T, B, ...], labels [B] → (params, opt_state, StepOutput)."""
    del key
    network_lib.check_inputs(net, inputs, labels)
    _check_params(net, params, config)
    num_steps = inputs.shape[0]
    window = window_length(config.truncation, num_steps)
    window_grads = window_gradients(net, config, num_steps)

    accumulate = config.window_mode == "accumulate"
    grad_sum = jax.tree_util.tree_map(jnp.zeros_like, params) if accumulate else None
    state = simulate.init_network_state(net, inputs.shape[1], inputs.dtype)
    num_full = num_steps // window
    windows = inputs[: num_full * window].reshape((num_full, window) + inputs.shape[1:])
    segments = [windows]
    if num_steps % window:
        segments.append(inputs[num_full * window :][None])
    totals = []
    for segment in segments:  # at most two static segments: full windows, then the remainder
        params, opt_state, state, grad_sum, segment_totals = _scan_windows(
            window_grads, state, params, opt_state, grad_sum, segment, labels, optimizer
        )
        totals.append(segment_totals)
    if accumulate:
        params, opt_state = base.apply_gradients(optimizer, grad_sum, opt_state, params)
    loss, outputs, rates = functools.reduce(base.tree_add, totals)
    aux = base.with_model_state(net, (outputs, base.finish_rates(rates, num_steps)), state)
    return params, opt_state, base.StepOutput(loss, *aux)


def tbptt(truncation: int = 0, block_size: int = 0, window_mode: str = "update", remat: bool = False) -> base.Method:
    """Temporally-truncated local BPTT (docs/methods.md §7); the defaults are BPTT.

    Args:
      truncation: window length K (0 = K = T, which is BPTT).
      block_size: spiking layers per local block, each but the last trained by its own auxiliary
        classifier (0 = one block, global training).
      window_mode: 'update' after every window or 'accumulate' the windows' gradients into one update.
      remat: rematerialise √K-step chunks of each window in the backward pass (jax.checkpoint).
    """
    settings = dict(truncation=truncation or None, block_size=block_size or None, window_mode=window_mode,
                    remat=remat)
    TBPTTConfig(**settings)  # refuses bad settings now, in one line

    def with_settings(config: config_lib.TrainConfig) -> TBPTTConfig:
        return TBPTTConfig(mse_weight=config.mse_weight, unroll=config.unroll, **settings)

    def step(net, params, opt_state, inputs, labels, *, optimizer, config, key=None):
        return train_step(net, params, opt_state, inputs, labels, optimizer=optimizer,
                          config=with_settings(config), key=key)

    def validate(net: network_lib.Network) -> None:
        size = settings["block_size"]
        if size is not None and not isinstance(net, network_lib.Network):
            raise ValueError(
                f"tbptt: local blocks (`block_size` = {size}) add an auxiliary classifier after each block of "
                "spiking layers, which needs a safjax.nn.Sequential model; use block_size=0 (truncation "
                "works on any model) or build the model with safjax.nn.Sequential.")
        if size is not None and size > net.num_layers:
            raise ValueError(
                f"tbptt: `block_size` (--block_size) = {size} exceeds the network's {net.num_layers} "
                f"spiking layer(s): expected 0 (one block) or 1 to {net.num_layers}.")

    def updates(num_steps: int) -> int:
        if window_mode == "accumulate":
            return 1
        return math.ceil(num_steps / window_length(settings["truncation"], num_steps))

    def cost_model(net, num_steps, batch_size):
        from safjax import costs

        if remat:
            return None
        return costs.tlbptt_costs(net, num_steps, settings["truncation"], settings["block_size"], batch_size,
                                  window_mode=window_mode)

    return base.Method(
        NAME, "temporally-truncated (local) BPTT, optional blocks of B layers (docs/methods.md §7)", step,
        updates, init_params=lambda net, p, key: init_params(net, p, with_settings(config_lib.TrainConfig()), key),
        network_params=network_params, cost_model=cost_model, validate=validate,
        settings=(("truncation", truncation), ("block_size", block_size), ("window_mode", window_mode),
                  ("remat", remat)),
    )
