"""Is a Flax model affine between its cells? (docs/methods.md §10.4)

SAF, OTTT and spike representation evaluate the maps between neuron cells on accumulations,
traces or rates instead of spikes; their identities hold only where every such map is affine in
the cells' signals (and the input): Linear, Conv, average pooling, residual sums, scaled weight
standardisation, normalisation with frozen statistics, a dropout mask held over T. Two checks,
both when the step is made or first sees its input shape:

- `check_structure`: Flax layers known to break it (batch statistics of the current minibatch,
  per-example normalisation, attention), named in one line;
- `check`: a numerical probe of everything else. Each cell passes on an independent random
  signal, and the model's step, as a map (input, signals, signals at t − 1) → (every cell's
  current, output), must satisfy F(αa + (1 − α)b) = αF(a) + (1 − α)F(b) at α = ½ and α = 2
  (max pooling, a product of two signals or a nonlinearity outside a cell fail it); the first
  cell whose current fails is named.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from safjax.engine import runtime as runtime_lib

_TRAINED_BY = "or train this model with bptt, tbptt or sltt"


def check_structure(model, method: str) -> None:
    """Refuse, in one line, a Flax layer whose map is not affine in its input."""
    for layer in model.layers:
        name = type(layer).__name__
        if isinstance(layer, nnx.BatchNorm) and not layer.use_running_average:
            raise ValueError(
                f"{method} needs maps between neuron cells that are affine in the cells' signals, but "
                f"{model.module_type} has a BatchNorm that normalises by the current minibatch's statistics; "
                f"freeze its statistics (BatchNorm(use_running_average=True), or scaled weight "
                f"standardisation instead), {_TRAINED_BY}.")
        if isinstance(layer, (nnx.LayerNorm, nnx.RMSNorm, nnx.GroupNorm)):
            raise ValueError(
                f"{method} needs maps between neuron cells that are affine in the cells' signals, but "
                f"{model.module_type} has a {name} (per-example normalisation divides by the signal's own "
                f"statistics); use scaled weight standardisation or frozen BatchNorm, {_TRAINED_BY}.")
        if isinstance(layer, nnx.MultiHeadAttention):
            raise ValueError(
                f"{method} needs maps between neuron cells that are affine in the cells' signals, but "
                f"{model.module_type} has a MultiHeadAttention (a product of two signals); {_TRAINED_BY}.")


class _Probe:
    """Each cell passes on its given signal (state[0]) and reads its given t − 1 signal (state[1])."""

    def step(self, neuron, state, current, context, index):
        return state, state[0], None

    def previous(self, neuron, state, context):
        return state[1]


def _probe_map(model, params, x, signals):
    runtime = runtime_lib.Runtime(_Probe(), model.neurons, signals, None, model.cell_names)
    with runtime_lib.activate(runtime):
        output = model.apply(params, x, runtime)
    _, _, currents = runtime.finish()
    return currents + (output,), tuple(runtime.order)


def check(model, method: str) -> None:
    """The numerical probe of the module docstring; refuses in one line, naming the cell. Runs once
    per shaped model (eagerly, also when first called inside a trace)."""
    if not hasattr(model, "_affinity_problem"):
        with jax.ensure_compile_time_eval():
            model._affinity_problem = _probe(model)
    if model._affinity_problem:
        raise ValueError(model._affinity_problem.format(method=method))


def _probe(model, batch_size: int = 3) -> str | None:
    """None where the model is affine between its cells, else the refusal (with a ``{method}`` slot)."""
    dtype = jnp.dtype(model.dtype)
    shapes = [(batch_size,) + tuple(model.input_shape)] + [(batch_size,) + tuple(s) for s in model.cell_shapes] * 2

    def point(key):
        leaves = [jax.random.uniform(k, shape, dtype) for k, shape in zip(jax.random.split(key, len(shapes)), shapes)]
        n = len(model.cell_shapes)
        return leaves[0], tuple(zip(leaves[1:1 + n], leaves[1 + n:]))

    def evaluate(x, signals):
        return _probe_map(model, model.params_state, x, signals)[0]

    a, b = point(jax.random.key(1)), point(jax.random.key(2))
    combine = lambda alpha: jax.tree_util.tree_map(lambda p, q: alpha * p + (1 - alpha) * q, a, b)  # noqa: E731
    f = evaluate
    fa, fb = f(*a), f(*b)
    tolerance = 1e-7 if dtype == jnp.float64 else 1e-3
    bad = set()
    for alpha in (0.5, 2.0):
        got = f(*combine(alpha))
        for index, (g, p, q) in enumerate(zip(got, fa, fb)):
            want = alpha * p + (1 - alpha) * q
            if not bool(jnp.all(jnp.abs(g - want) <= tolerance * (1.0 + jnp.max(jnp.abs(want))))):
                bad.add(index)
    if not bad:
        return None
    culprit = next((i for i in _probe_map_order(model, a) if i in bad), None)
    where = "the model's output (after the last cell)" if culprit is None else \
        f"the current into cell {model.cell_names[culprit]}"
    return (
        "{method} needs maps between neuron cells that are affine in the cells' signals (Linear, Conv, "
        f"average pooling, residual sums, frozen normalisation), but in {model.module_type} {where} is not "
        f"(max pooling, a product of two signals, or a nonlinearity outside a cell?); use average pooling "
        f"and keep nonlinearities in cells, {_TRAINED_BY}.")


def _probe_map_order(model, point):
    order = []

    def run(x, signals):
        _, fired = _probe_map(model, model.params_state, x, signals)
        order.extend(fired)
        return 0

    jax.eval_shape(run, *point)
    return order
