"""A user's own Flax model (Flax layers + safjax cells) through `safjax.make_train_step`: every
method trains it where its structure allows, is refused in one line where it does not, cells step
by hand like any Flax layer, a dropout mask is held over T, and every method learns real data.
The exactness of the methods on such models is tests/test_flax_identities.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import safjax
from safjax import nn
from safjax.datasets import load_digits
from budget import first_fast

ALL_METHODS = ["saf_e", "saf_f", "ottt_a", "ottt_o", "spike_rep", "bptt", "tbptt", "sltt", "sltt_k"]
ONLINE = ["saf_e", "saf_f", "ottt_a", "ottt_o", "spike_rep"]


class MLP(nnx.Module):
    def __init__(self, rngs, cell=None, hidden=32):
        self.fc1 = nnx.Linear(64, hidden, rngs=rngs)
        self.lif1 = cell or nn.LIF(0.5)
        self.out = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(self.lif1(self.fc1(x.reshape(x.shape[0], -1))))


class Pooled(nnx.Module):
    """A conv net whose pooling is ``pool`` (max pooling breaks SAF's identity)."""

    def __init__(self, rngs, pool):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.lif1 = nn.LIF()
        self.pool = pool
        self.out = nnx.Linear(4 * 4 * 4, 10, rngs=rngs)

    def __call__(self, x):
        s = self.pool(self.lif1(self.conv(x)), (2, 2), strides=(2, 2))
        return self.out(s.reshape(s.shape[0], -1))


class Product(nnx.Module):
    """An attention-like product of two spike tensors."""

    def __init__(self, rngs):
        self.fc1, self.fc2 = nnx.Linear(64, 16, rngs=rngs), nnx.Linear(64, 16, rngs=rngs)
        self.lif1, self.lif2, self.lif3 = nn.LIF(), nn.LIF(), nn.LIF()
        self.fc3, self.out = nnx.Linear(16, 16, rngs=rngs), nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        return self.out(self.lif3(self.fc3(self.lif1(self.fc1(x)) * self.lif2(self.fc2(x)))))


class Normed(nnx.Module):
    def __init__(self, rngs, norm):
        self.fc1, self.norm, self.lif1 = nnx.Linear(64, 16, rngs=rngs), norm, nn.LIF()
        self.out = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(self.lif1(self.norm(self.fc1(x.reshape(x.shape[0], -1)))))


class WithDropout(nnx.Module):
    def __init__(self, rngs):
        self.fc1, self.lif1 = nnx.Linear(64, 32, rngs=rngs), nn.LIF(0.5, 0.5)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(self.lif1(self.fc1(x.reshape(x.shape[0], -1)))))


def _batch(time_steps=4, batch=8):
    images, labels = load_digits("train")
    return safjax.encoding.direct(jnp.asarray(images[:batch]), time_steps), jnp.asarray(labels[:batch])


def _one_step(method, model, key=None):
    optimizer = optax.sgd(0.1)
    params = nnx.state(model, nnx.Param)
    step = safjax.make_train_step(method, model, optimizer)
    inputs, labels = _batch()
    return params, step(params, optimizer.init(params), inputs, labels, key)


@pytest.mark.slow  # the default run trains one with saf_e in test_a_plain_flax_model_learns_digits
@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_trains_a_plain_flax_model(method):
    model = MLP(nnx.Rngs(0))
    params, (new_params, _, metrics) = _one_step(method, model, jax.random.key(1))
    assert jax.tree_util.tree_structure(new_params) == jax.tree_util.tree_structure(params)
    assert np.isfinite(float(metrics.loss)) and len(metrics.firing_rates) == 1
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                zip(jax.tree_util.tree_leaves(new_params), jax.tree_util.tree_leaves(params)))
    assert moved > 0
    nnx.update(model, new_params)  # the trained values go back into the model
    assert float(jnp.max(jnp.abs(model.out.kernel.get_value() - new_params["out"]["kernel"].get_value()))) == 0


@pytest.mark.parametrize("method", first_fast(ONLINE))
@pytest.mark.parametrize("pool, culprit", [(nnx.max_pool, "the model's output"), (nnx.avg_pool, None)])
def test_max_pooling_is_refused_by_the_online_methods_and_average_pooling_is_not(method, pool, culprit):
    model = Pooled(nnx.Rngs(0), pool)
    if culprit is None:
        _one_step(method, model)
        return
    with pytest.raises(ValueError, match=rf"^{method} needs maps between neuron cells that are affine.*{culprit}.*max pooling"):
        _one_step(method, model)


@pytest.mark.slow
def test_bptt_and_sltt_accept_max_pooling_and_products():
    for method in ("bptt", "sltt"):
        _one_step(method, Pooled(nnx.Rngs(0), nnx.max_pool))
        _one_step(method, Product(nnx.Rngs(0)))


def test_a_product_of_two_spike_tensors_is_refused_naming_the_cell():
    with pytest.raises(ValueError, match=r"saf_e needs .* the current into cell 'lif3' is not"):
        _one_step("saf_e", Product(nnx.Rngs(0)))


@pytest.mark.parametrize("norm, message", [
    (lambda r: nnx.BatchNorm(16, rngs=r), "BatchNorm that normalises by the current minibatch's statistics"),
    (lambda r: nnx.LayerNorm(16, rngs=r), "LayerNorm \\(per-example normalisation"),
])
def test_normalisation_that_is_not_frozen_is_refused_when_the_step_is_made(norm, message):
    model = Normed(nnx.Rngs(0), norm(nnx.Rngs(1)))
    with pytest.raises(ValueError, match=message):
        safjax.make_train_step("saf_e", model, optax.sgd(0.1))


@pytest.mark.parametrize("method", first_fast(["bptt", "sltt", "sltt_k", "tbptt"]))
def test_batch_norm_running_statistics_are_updated_every_step_and_carried_into_the_model(method):
    """BatchNorm in training mode under BPTT, TBPTT and SLTT: the running mean is an exponential average
    (momentum m = 0.99) over every time step's batch mean, carried from step to step and minibatch to
    minibatch and written back into the model. With direct encoding the BatchNorm input fc(x) is the
    same every step, so after k minibatches of T steps the mean is (1 − m^{kT})·μ, μ = mean_B fc(x)."""
    model = Normed(nnx.Rngs(0), nnx.BatchNorm(16, rngs=nnx.Rngs(1)))
    optimizer = optax.sgd(0.0)  # parameters fixed: fc(x), hence μ, stays the same
    params = nnx.state(model, nnx.Param)
    opt_state = optimizer.init(params)
    inputs, labels = _batch(time_steps=3)
    mu = np.mean(np.asarray(model.fc1(inputs[0].reshape(inputs.shape[1], -1))), axis=0)
    step = safjax.make_train_step(method, model, optimizer)
    for minibatch in (1, 2):
        params, opt_state, _ = step(params, opt_state, inputs, labels, jax.random.key(minibatch))
        np.testing.assert_allclose(model.norm.mean.get_value(), (1 - 0.99 ** (3 * minibatch)) * mu, rtol=1e-4,
                                   atol=1e-6)
    model.eval()  # evaluation normalises with the running statistics
    assert model.norm.use_running_average


def test_frozen_batch_norm_trains_under_saf():
    model = Normed(nnx.Rngs(0), nnx.BatchNorm(16, use_running_average=True, rngs=nnx.Rngs(1)))
    _one_step("saf_e", model)


@pytest.mark.parametrize("cell, message", [
    (nn.Neuron(safjax.neurons.alif()), r"saf_e needs .* but cells 'lif1' use ALIF"),
    (nn.LIF(reset="hard"), r"saf_e needs .*soft .* but cells 'lif1' use LIF\(reset='hard'\)"),
])
def test_cells_without_the_identity_are_refused_when_the_step_is_made(cell, message):
    with pytest.raises(ValueError, match=message):
        safjax.make_train_step("saf_e", MLP(nnx.Rngs(0), cell), optax.sgd(0.1))
    _one_step("bptt", MLP(nnx.Rngs(0), cell))  # BPTT trains them


def test_malformed_models_are_refused_in_one_line():
    class NoCell(nnx.Module):
        def __init__(self, rngs):
            self.fc = nnx.Linear(64, 10, rngs=rngs)

        def __call__(self, x):
            return self.fc(x.reshape(x.shape[0], -1))

    class Twice(MLP):
        def __call__(self, x):
            return self.out(self.lif1(self.lif1(self.fc1(x.reshape(x.shape[0], -1)))))

    class NotScores(MLP):
        def __call__(self, x):
            return self.lif1(self.fc1(x.reshape(x.shape[0], -1)))[:, None, :]

    class FeedbackWithoutShape(MLP):
        def __call__(self, x):
            return self.out(self.lif1(self.fc1(x.reshape(x.shape[0], -1)) + self.lif1.previous()))

    with pytest.raises(ValueError, match="has no safjax.nn neuron cell"):
        safjax.make_train_step("bptt", NoCell(nnx.Rngs(0)), optax.sgd(0.1))
    with pytest.raises(ValueError, match="called twice in one time step"):
        _one_step("bptt", Twice(nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"class scores \[B, C\], got shape \(2, 1, 32\)"):
        _one_step("bptt", NotScores(nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"read at t − 1 .*LIF\(shape="):
        _one_step("bptt", FeedbackWithoutShape(nnx.Rngs(0)))
    with pytest.raises(ValueError, match="local blocks .* safjax.nn.Sequential"):
        safjax.make_train_step(safjax.get_method("tbptt", block_size=1), MLP(nnx.Rngs(0)), optax.sgd(0.1))


def test_a_cell_steps_by_hand_like_a_flax_layer_and_matches_the_engine():
    model = MLP(nnx.Rngs(0))
    inputs, _ = _batch()
    by_hand = jnp.stack([model(x_t) for x_t in inputs])
    from safjax.engine import flax_model

    engine_outputs, _ = safjax.simulate.run(flax_model.FlaxModel(model).with_input((8, 8, 1), jnp.float32),
                                            nnx.state(model, nnx.Param), inputs)
    np.testing.assert_allclose(by_hand, engine_outputs, atol=1e-6)
    assert model.lif1.state.get_value() is not None
    nn.reset(model)
    assert model.lif1.state.get_value() is None
    np.testing.assert_allclose(model(inputs[0]), engine_outputs[0], atol=1e-6)  # starts from zero again


@pytest.mark.slow
def test_flax_dropout_draws_one_mask_per_minibatch_held_over_time():
    """nnx.Dropout under the engine: one mask per minibatch key, held over T and shared by OTTT's two
    passes — else SAF-E's accumulations would not match OTTT's traces step by step (docs/methods.md §1.7,
    §5); a missing key is refused, and different keys draw different masks."""
    from safjax.engine import flax_model
    from safjax.methods import ottt_o, saf_e

    with pytest.raises(ValueError, match="pass a fresh `key`"):
        _one_step("saf_e", WithDropout(nnx.Rngs(0)))
    model = WithDropout(nnx.Rngs(0))
    for layer in (model.fc1, model.out):
        layer.kernel.set_value(layer.kernel.get_value().astype(jnp.float64))
        layer.bias.set_value(layer.bias.get_value().astype(jnp.float64) + 0.1)
    params = nnx.state(model, nnx.Param)
    inputs, labels = _batch(time_steps=5)
    shaped = flax_model.FlaxModel(model).with_input((8, 8, 1), jnp.float64)
    config = safjax.TrainConfig()
    grads = {}
    for seed in (3, 4):
        bound = shaped.bind(jax.random.key(seed))
        saf = saf_e.step_gradients(bound, params, inputs.astype(jnp.float64), labels, config)
        ottt = ottt_o.step_gradients(bound, params, inputs.astype(jnp.float64), labels, config)
        gap = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                  zip(jax.tree_util.tree_leaves(saf), jax.tree_util.tree_leaves(ottt)))
        assert gap < 1e-10, f"key {seed}: per-step SAF-E vs OTTT_O {gap:.2e}"
        grads[seed] = saf
    out_kernel = [np.asarray(grads[s]["out"]["kernel"].get_value()) for s in (3, 4)]
    assert not np.allclose(*out_kernel)  # the masks differ between keys
    dropped = [np.all(g.sum(0) == 0, axis=1) for g in out_kernel]  # rows of dropped neurons: zero at every t
    assert 0 < dropped[0].sum() < 32 and not np.array_equal(*dropped)


@pytest.mark.parametrize("method", first_fast(["saf_e", "bptt"]))
def test_a_plain_flax_model_learns_digits(method):
    _learns(method)


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in ALL_METHODS if m not in ("saf_e", "bptt")])
def test_a_plain_flax_model_learns_digits_with_every_method(method):
    _learns(method)


def _learns(method, epochs=4, batch=64, time_steps=4):
    images, labels = load_digits("train")
    test_images, test_labels = load_digits("test")
    model = MLP(nnx.Rngs(0), hidden=64)
    optimizer = optax.adam(2e-3)
    params = nnx.state(model, nnx.Param)
    opt_state = optimizer.init(params)
    step = safjax.make_train_step(method, model, optimizer)
    key = jax.random.key(0)
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(images))
        for i in range(len(images) // batch):
            rows = order[i * batch:(i + 1) * batch]
            inputs = safjax.encoding.direct(jnp.asarray(images[rows], jnp.float32), time_steps)
            params, opt_state, _ = step(params, opt_state, inputs, jnp.asarray(labels[rows]),
                                        jax.random.fold_in(key, epoch * 1000 + i))
    nnx.update(model, params)
    nn.reset(model)
    test = safjax.encoding.direct(jnp.asarray(test_images, jnp.float32), time_steps)
    scores = sum(model(x_t) for x_t in test)
    accuracy = float(jnp.mean(jnp.argmax(scores, -1) == jnp.asarray(test_labels)))
    assert accuracy > 0.85, f"{method}: test accuracy {accuracy:.3f} after {epochs} epochs"


@pytest.mark.slow
def test_nnx_conv_takes_the_fast_cpu_weight_gradient_with_unchanged_values(monkeypatch):
    """On XLA:CPU an nnx.Conv inside the time loop gets safjax.conv's canonical weight gradient (≈ 50× faster
    there); the gradient is the plain convolution's."""
    from safjax.engine import flax_model
    from safjax.methods import bptt

    class ConvNet(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs, param_dtype=jnp.float64)
            self.lif1 = nn.LIF(0.5, 0.3)
            self.out = nnx.Linear(8 * 8 * 4, 10, rngs=rngs, param_dtype=jnp.float64)

        def __call__(self, x):
            s = self.lif1(self.conv(x))
            return self.out(s.reshape(s.shape[0], -1))

    model = ConvNet(nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    inputs, labels = _batch()
    inputs = inputs.astype(jnp.float64)
    config = safjax.TrainConfig()

    def grads():
        shaped = flax_model.FlaxModel(model).with_input((8, 8, 1), jnp.float64)
        return bptt.loss_and_grads(shaped, params, inputs, labels, config)[1]

    shaped = flax_model.FlaxModel(model).with_input((8, 8, 1), jnp.float64)
    jaxpr = str(jax.make_jaxpr(lambda p: safjax.simulate.run(shaped, p, inputs))(params))
    assert jax.default_backend() != "cpu" or "custom_vjp_call" in jaxpr
    fast = grads()
    monkeypatch.setattr(flax_model.jax, "default_backend", lambda: "gpu")  # the plain convolution
    plain = grads()
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(fast)) > 1e-3
    for a, b in zip(jax.tree_util.tree_leaves(fast), jax.tree_util.tree_leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_sequential_refuses_a_flax_layer_in_one_line_naming_the_alternative():
    with pytest.raises(ValueError, match=r"^Sequential accepts safjax.nn modules only, got a Linear; .*Bring your own") as error:
        nn.Sequential(nnx.Linear(64, 10, rngs=nnx.Rngs(0)), nn.LIF(), input_shape=(64,))
    assert "\n" not in str(error.value)


class _HandWrittenStepModel:
    """docs/methods.md §10.1's third form: no Flax, a pure function of (params, x_t) that fires its cells
    through the runtime; the engine threads their state."""

    neurons = (safjax.lif(0.5, 0.5),)
    cell_names = ("hidden",)
    cell_shapes = ((16,),)
    input_shape = (64,)
    num_classes = 10
    scales_bias = True  # it weights its biases by runtime.bias_scale itself

    def apply(self, params, x_t, runtime):
        spikes = runtime.cell(0, x_t @ params["w1"] + runtime.bias_scale * params["b1"])
        return spikes @ params["w2"] + runtime.bias_scale * params["b2"]

    def describe_cells(self, indices):
        return f"cells {[self.cell_names[i] for i in indices]}"

    def check_affine(self, method):
        pass


@pytest.mark.slow
def test_a_step_model_written_without_flax_trains_with_saf_and_equals_the_same_flax_model():
    from safjax.engine import flax_model
    from safjax.methods import saf_e

    jax.config.update("jax_enable_x64", True)
    flax_net = MLP(nnx.Rngs(0), cell=nn.LIF(0.5, 0.5), hidden=16)
    for layer in (flax_net.fc1, flax_net.out):
        layer.kernel.set_value(layer.kernel.get_value().astype(jnp.float64))
        layer.bias.set_value(layer.bias.get_value().astype(jnp.float64) + 0.2)
    params = {"w1": flax_net.fc1.kernel.get_value(), "b1": flax_net.fc1.bias.get_value(),
              "w2": flax_net.out.kernel.get_value(), "b2": flax_net.out.bias.get_value()}
    inputs, labels = _batch()
    inputs = inputs.reshape(inputs.shape[:2] + (64,)).astype(jnp.float64)
    config = safjax.TrainConfig()
    plain = saf_e.step_gradients(_HandWrittenStepModel(), params, inputs, labels, config)
    shaped = flax_model.FlaxModel(flax_net).with_input((64,), jnp.float64)
    flax = saf_e.step_gradients(shaped, nnx.state(flax_net, nnx.Param), inputs, labels, config)
    np.testing.assert_allclose(plain["w1"], flax["fc1"]["kernel"].get_value(), atol=1e-12)
    np.testing.assert_allclose(plain["b2"], flax["out"]["bias"].get_value(), atol=1e-12)
    assert float(jnp.max(jnp.abs(plain["w1"]))) > 1e-4
