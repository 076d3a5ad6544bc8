"""Data-parallel training over a device mesh: the batch is sharded over a ``data`` axis and the
parameters and optimizer state are replicated.

Each device runs the method on its own shard (`jax.shard_map`) with an optimizer whose first
stage averages the gradients over ``data`` (`pmean_gradients`). Communication therefore happens
exactly where the method updates: once per minibatch for BPTT, OTTT_A, SAF-F and SR, once per
time step for OTTT_O and SAF-E (which update every step) — never per step merely because the
gradient is accumulated inside the time loop. Shards are equal, so the mean of the per-device
mean losses is the global mean loss and the result equals single-device training.
Multi-host: call `jax.distributed.initialize()` first and feed each process its own slice of the
global batch (`jax.make_array_from_process_local_data`).

The model is a `safjax.Network` or a Flax model's shaped step model,
``FlaxModel(module).with_input(input_shape, dtype)`` (`safjax.engine.flax_model`), whose params are
``nnx.to_pure_dict(params_state)`` (plain nested dicts, e.g. for checkpoints; an ``nnx.State`` of
them is refused by the params check).
"""

from __future__ import annotations

import re
from typing import Callable

import jax
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from safjax import train_config as config_lib
from safjax import methods, step_builder
from safjax import network as network_lib
from safjax.engine import steps

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh over the first ``num_devices`` devices (all of them by default)."""
    devices = jax.devices()
    count = len(devices) if num_devices is None else num_devices
    if not (isinstance(count, int) and 1 <= count <= len(devices)):
        raise ValueError(
            f"`num_devices` must be an int in 1..{len(devices)} (the devices JAX sees), got {num_devices!r}."
        )
    return jax.make_mesh(
        (count,), (DATA_AXIS,), devices=devices[:count], axis_types=(jax.sharding.AxisType.Auto,)
    )


def replicate(tree, mesh: jax.sharding.Mesh):
    """Place every array of ``tree`` on all devices of ``mesh`` (parameters, optimizer state), so
    that a fresh and a restored run feed the compiled step identically placed arguments."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def batch_shardings(mesh: jax.sharding.Mesh) -> tuple[NamedSharding, NamedSharding]:
    """Shardings of time-major inputs [T, B, ...] and labels [B]: B split over ``data``."""
    return NamedSharding(mesh, P(None, DATA_AXIS)), NamedSharding(mesh, P(DATA_AXIS))


def pmean_gradients(axis_name: str = DATA_AXIS) -> optax.GradientTransformation:
    """An optax stage that averages the incoming gradients over a mapped mesh axis."""

    def update(updates, state, params=None):
        del params
        return jax.lax.pmean(updates, axis_name), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def train_state(net, opt_state):
    """What the data-parallel step takes and returns as its optimizer state: ``opt_state`` itself, or
    for a model that carries its own state (a Flax model whose BatchNorm updates running statistics,
    `engine.steps.carries_state`) the pair (``opt_state``, those statistics), as Flax's train states
    carry batch statistics beside the optimizer's: checkpointed, restored and replicated with it."""
    return (opt_state, net.initial_model_state()) if steps.carries_state(net) else opt_state


def model_state(net, state):
    """The running statistics in a `train_state` (None for a model without)."""
    return state[1] if steps.carries_state(net) else None


def make_parallel_train_step(
    method,
    net,
    optimizer: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
    config: config_lib.TrainConfig = config_lib.TrainConfig(),
    prepare_inputs: Callable | None = None,
    donate: bool = False,
) -> Callable:
    """Like `safjax.make_train_step`, data-parallel over ``mesh``; the global batch must divide
    evenly over its devices. The jitted function itself is ``step.jitted`` (e.g. to lower it).

    ``prepare_inputs`` (optional) maps each device's batch-major inputs [B, ...] to the
    time-major [T, B, ...] the methods take, inside the compiled step (e.g. direct encoding or
    a transpose of event frames); without it the step takes time-major inputs.
    For a model that carries running statistics, ``opt_state`` is `train_state`'s pair: each device
    normalises by its own shard's batch statistics and the updated running statistics are averaged
    over the devices (one all-reduce per minibatch).
    ``donate=True`` donates the params and optimizer-state buffers to the step (the trainer's
    setting: the step's outputs replace them, so no second copy is kept). Like
    `safjax.make_train_step`, networks the method cannot train are refused when the step is made
    and every call checks the params, optimizer state, inputs and labels first (``step.jitted``
    checks nothing).
    """
    method = step_builder.as_method(method)
    net = getattr(net, "network", net)  # a safjax.nn.Sequential: its Network
    if isinstance(net, nnx.Module):
        raise ValueError(
            f"make_parallel_train_step takes a Flax model as its shaped step model: pass "
            f"safjax.engine.flax_model.FlaxModel({type(net).__name__}(...)).with_input(input_shape, dtype) "
            "and params = nnx.to_pure_dict(that_model.params_state).")
    step_builder.check_model(method, net)  # e.g. MaxPool under SAF: refused now, not at the first call
    train_step = method.train_step
    replicated = NamedSharding(mesh, P())
    inputs_sharding, labels_sharding = batch_shardings(mesh)
    num_devices = mesh.devices.size
    averaged = optax.chain(pmean_gradients(DATA_AXIS), optimizer)

    carries = steps.carries_state(net)

    def local_step(params, opt_state, inputs, labels, key):
        if prepare_inputs is not None:
            inputs = prepare_inputs(inputs)
        bound, method_key = step_builder.bind_minibatch(net, key, jax.lax.axis_index(DATA_AXIS))
        if carries:  # (optimizer state, running statistics): see `train_state`
            opt_state, model_state = opt_state
            bound = bound.bind_model_state(model_state)
        params, (_, opt_state), metrics = train_step(
            bound, params, (optax.EmptyState(), opt_state), inputs, labels,
            optimizer=averaged, config=config, key=method_key,
        )
        metrics = metrics._replace(
            loss=jax.lax.pmean(metrics.loss, DATA_AXIS),
            firing_rates=jax.lax.pmean(metrics.firing_rates, DATA_AXIS),
        )
        if carries:  # each device's statistics are of its own shard (unsynchronised batch norm)
            opt_state = (opt_state, jax.lax.pmean(metrics.model_state, DATA_AXIS))
            metrics = metrics._replace(model_state=None)
        return params, opt_state, metrics

    metric_specs = methods.StepOutput(loss=P(), outputs=P(DATA_AXIS), firing_rates=P())
    if prepare_inputs is not None:
        inputs_sharding = labels_sharding  # batch-major: B is the leading axis
    mapped = jax.shard_map(
        local_step, mesh=mesh,
        in_specs=(P(), P(), inputs_sharding.spec, P(DATA_AXIS), P()),
        out_specs=(P(), P(), metric_specs),
        # Zero-initialised scan carries start device-invariant and become per-device; the
        # replication of params and opt_state is guaranteed by the gradient pmean, and tested.
        check_vma=False,
    )
    jitted = jax.jit(mapped, in_shardings=(replicated, replicated, inputs_sharding, labels_sharding, replicated),
                     donate_argnums=(0, 1) if donate else ())

    def step(params, opt_state, inputs, labels, key=None):
        step_builder.check_state(method, net, optimizer, params, opt_state[0] if carries else opt_state)
        if prepare_inputs is None:
            network_lib.check_inputs(net, inputs, labels)
        elif getattr(labels, "is_fully_addressable", True):
            network_lib.check_label_range(labels, net.num_classes)
        if labels.shape[0] % num_devices:
            raise ValueError(
                f"batch size {labels.shape[0]} is not divisible by the {num_devices} devices; "
                f"use a multiple of {num_devices} or fewer devices (--num_devices)."
            )
        return jitted(params, opt_state, inputs, labels, step_builder.check_key(method, net, key))

    step.jitted = jitted
    step.inputs_sharding, step.labels_sharding = inputs_sharding, labels_sharding
    return step


def count_all_reduces(hlo_text: str) -> dict[str, int]:
    """All-reduce instructions in compiled HLO: ``in_loops`` (inside while bodies, so executed
    once per iteration — per time step for a scanned time loop) and ``outside_loops``."""
    bodies = set(re.findall(r"body=%?([\w.\-]+)", hlo_text))
    counts = {"in_loops": 0, "outside_loops": 0}
    current = None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if header:
            current = header.group(1)
        if re.search(r"\ball-reduce(-start)?\(", line):
            counts["in_loops" if current in bodies else "outside_loops"] += 1
    return counts
