"""Issue 20 (items 4, 5, 6, 7, 10): inputs that used to train silently wrong, or fail later with a
foreign error, are refused (or, where the call may be right, warned about) in one line."""

import dataclasses
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from PIL import Image

import safjax
from safjax import datasets, models, network, nn, parallel, simulate
from safjax.experiment_config import ExperimentConfig, from_flags

import reference_nets
from budget import first_fast

LABELS = jnp.array([0, 1, 2])


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def _mlp_model(rngs=None, hidden=16):
    """Input 12 → ``hidden`` → 12 spiking neurons → 5 classes (two spiking layers)."""
    rngs = rngs or nnx.Rngs(0)
    return nn.Sequential(nn.Dense(12, hidden, rngs=rngs), nn.LIF(), nn.Dense(hidden, 12, rngs=rngs), nn.LIF(),
                         nn.Dense(12, 5, rngs=rngs), input_shape=(12,))


def _inputs(num_steps=4, batch=3, dtype=jnp.float32):
    return jax.random.uniform(jax.random.key(1), (num_steps, batch, 12), dtype, 0.0, 2.0)


STEP_MAKERS = {
    "single": lambda method, net, optimizer: safjax.make_train_step(method, net, optimizer),
    "parallel": lambda method, net, optimizer: parallel.make_parallel_train_step(
        method, net, optimizer, parallel.make_mesh(1)),
}


# 4. A one-class image folder.

def test_image_folder_with_one_class_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFJAX_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "root" / "train" / "cats"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((4, 4, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    with pytest.raises(ValueError) as error:
        datasets.load(f"image_folder:{tmp_path / 'root'}", "train")
    message = _one_line(error)
    assert str(tmp_path / "root") in message and "'cats'" in message and "≥ 2 classes" in message


# 5. `~` in the path fields of an experiment.

def test_home_folder_is_expanded_in_every_path_field(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = from_flags({"workdir": "~/runs/x", "data_dir": "~/tfds", "dataset": "image_folder:~/images"})
    assert config.workdir == os.path.join(str(tmp_path), "runs", "x")
    assert config.data_dir == os.path.join(str(tmp_path), "tfds")
    assert config.dataset == "image_folder:" + os.path.join(str(tmp_path), "images")
    assert dataclasses.replace(config, seed=1).workdir == config.workdir  # normalising twice changes nothing
    plain = ExperimentConfig(workdir="runs/x", data_dir="", dataset="digits")
    assert (plain.workdir, plain.data_dir, plain.dataset) == ("runs/x", "", "digits")
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(ExperimentConfig)}
    assert all("~ is your home folder" in helps[name] for name in ("workdir", "data_dir"))
    assert "~ in <root> is your home folder" in helps["dataset"]


# 6. The Python API: non-finite inputs, `Sequential.__call__`, `load_params`, Dropout's mode.

@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("as_numpy", [False, True])
def test_train_step_refuses_non_finite_inputs(value, as_numpy):
    model = _mlp_model()
    optimizer = optax.sgd(0.1)
    step = safjax.make_train_step("bptt", model.network, optimizer)
    inputs = _inputs().at[2, 1, 5].set(value)
    params = model.params()
    with pytest.raises(ValueError, match=r"^`inputs` hold \d NaN and \d infinite value\(s\)") as error:
        step(params, optimizer.init(params), np.asarray(inputs) if as_numpy else inputs, LABELS)
    _one_line(error)


def test_non_finite_check_skips_traced_inputs():
    net = _mlp_model().network
    inputs = _inputs().at[0, 0, 0].set(np.nan)
    traced = jax.jit(lambda x: (network.check_inputs(net, x, LABELS), x)[1])(inputs)  # no concretisation error
    assert np.isnan(np.asarray(traced)[0, 0, 0])


def test_sequential_checks_its_inputs():
    model = _mlp_model()
    with pytest.raises(ValueError, match=r"time-major with shape \('T', 'B', 12\), got \(3, 12\)") as error:
        model(_inputs()[0])  # one step without T
    _one_line(error)
    with pytest.raises(ValueError, match=r"astype\(jnp.float32\)"):
        model(_inputs().astype(jnp.uint8))
    with pytest.raises(ValueError, match="NaN"):
        model(_inputs().at[0, 0, 0].set(np.nan))


def test_sequential_warns_about_batch_major_looking_inputs():
    model = _mlp_model()
    batch_major = jax.random.uniform(jax.random.key(2), (32, 4, 12))  # B = 32 examples of T = 4 steps
    with pytest.warns(UserWarning, match=r"read time-major, as T = 32 steps of B = 4.*jnp.swapaxes"):
        model(batch_major)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model(_inputs()).shape == (4, 3, 5)  # time-major with few examples: no warning
        assert model(_inputs(num_steps=50, batch=1)).shape == (50, 1, 5)


def test_load_params_refuses_params_of_another_model():
    model, wider = _mlp_model(), _mlp_model(hidden=32)
    before = model.params()
    with pytest.raises(ValueError, match=r"^the parameter tree does not match the network: .*\(32,\).*"
                                         r"\(16,\).*params of another model\?") as error:
        model.load_params(wider.params())
    _one_line(error)
    unchanged = jax.tree_util.tree_map(np.array_equal, model.params(), before)
    assert all(jax.tree_util.tree_leaves(unchanged))  # nothing was written


def _always_firing_dropout_model(rate=0.5):
    """Every hidden neuron fires at every step (current 10 ≫ V_th); the readout is the identity, so
    o[t] is the dropout mask itself."""
    model = nn.Sequential(nn.Dense(3, 8, rngs=nnx.Rngs(0)), nn.LIF(), nn.Dropout(rate),
                          nn.Dense(8, 8, rngs=nnx.Rngs(0)), input_shape=(3,))
    params = model.params()
    params["layers"][0][0][0] = {"kernel": jnp.zeros((3, 8)), "bias": jnp.full((8,), 10.0)}
    params["readout"][1] = {"kernel": jnp.eye(8), "bias": jnp.zeros((8,))}
    model.load_params(params)
    return model


def test_sequential_dropout_follows_train_and_eval():
    model = _always_firing_dropout_model()
    inputs = jnp.zeros((5, 16, 3))
    model.eval()
    np.testing.assert_array_equal(model(inputs), jnp.ones((5, 16, 8)))  # identity: all spikes pass
    model.train()
    with pytest.raises(ValueError, match=r"training mode .*rngs=nnx.Rngs\(dropout=seed\).*model.eval\(\)") as error:
        model(inputs)
    _one_line(error)
    outputs = np.asarray(model(inputs, rngs=nnx.Rngs(dropout=1)))
    assert set(np.unique(outputs)) == {0.0, 2.0}  # m ∈ {0, 1/(1 − p)}
    np.testing.assert_array_equal(outputs, np.broadcast_to(outputs[0], outputs.shape))  # held over T
    assert 0.3 < (outputs == 0).mean() < 0.7
    again = np.asarray(model(inputs, rngs=nnx.Rngs(dropout=2)))
    assert not np.array_equal(outputs, again)  # a new mask per call


def test_sequential_uses_the_dropout_modules_own_rngs():
    model = nn.Sequential(nn.Dense(3, 8, rngs=nnx.Rngs(0)), nn.LIF(), nn.Dropout(0.5, rngs=nnx.Rngs(4)),
                          nn.Dense(8, 8, rngs=nnx.Rngs(0)), input_shape=(3,))
    model.load_params(_always_firing_dropout_model().params())
    outputs = np.asarray(model(jnp.zeros((2, 16, 3))))
    assert set(np.unique(outputs)) == {0.0, 2.0}


def test_dropout_module_follows_train_and_eval():
    x = jnp.ones((4, 64))
    drop = nn.Dropout(0.5, rngs=nnx.Rngs(3))
    first, second = np.asarray(drop(x)), np.asarray(drop(x))
    assert set(np.unique(first)) == {0.0, 2.0} and not np.array_equal(first, second)
    drop.eval()
    assert drop.deterministic
    np.testing.assert_array_equal(drop(x), x)
    drop.train()
    assert set(np.unique(np.asarray(drop(x)))) == {0.0, 2.0}
    with pytest.raises(ValueError, match="training mode"):
        nn.Dropout(0.5)(x)
    np.testing.assert_array_equal(nn.Dropout(0.5, deterministic=True)(x), x)
    assert set(np.unique(np.asarray(nn.Dropout(0.5)(x, rngs=jax.random.key(0))))) == {0.0, 2.0}


# 7. Widths, SLTT-K's K and TL-BPTT's block size.

@pytest.mark.parametrize("maker", first_fast(list(STEP_MAKERS)))
def test_narrow_layers_are_warned_about(maker):
    narrow = models.digits_mlp(nnx.Rngs(0), width=0.001).network  # 256 hidden neurons × 0.001 → 1
    assert narrow.layer_shapes == ((1,),)
    with pytest.warns(UserWarning, match=r"fewer than 4 channels \(layer 1: 1\).*--width"):
        STEP_MAKERS[maker]("bptt", narrow, optax.sgd(0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        STEP_MAKERS[maker]("bptt", models.digits_mlp(nnx.Rngs(0), width=0.125).network, optax.sgd(0.1))


def test_sltt_k_refuses_more_backprop_steps_than_time_steps():
    model = _mlp_model()
    optimizer = optax.sgd(0.1)
    params = model.params()
    step = safjax.make_train_step(safjax.get_method("sltt_k", backprop_steps=5), model.network, optimizer)
    with pytest.raises(ValueError, match=r"`backprop_steps` \(--backprop_steps\) = 5 exceeds the T = 4 "
                                         r"time steps.*0 \(every step\) to 4") as error:
        step(params, optimizer.init(params), _inputs(num_steps=4), LABELS, jax.random.key(0))
    _one_line(error)
    step(params, optimizer.init(params), _inputs(num_steps=5), LABELS, jax.random.key(0))  # K = T: fine
    with pytest.raises(ValueError, match=r"^--backprop_steps=5 is invalid: expected 0 \(every step\) to "
                                         r"--time_steps=4"):
        ExperimentConfig(method="sltt_k", time_steps=4, method_settings={"backprop_steps": 5}).validate()
    ExperimentConfig(method="sltt_k", time_steps=5, method_settings={"backprop_steps": 5}).validate()


@pytest.mark.parametrize("maker", first_fast(list(STEP_MAKERS)))
def test_tbptt_refuses_blocks_larger_than_the_network(maker):
    net = _mlp_model().network  # two spiking layers
    with pytest.raises(ValueError, match=r"`block_size` \(--block_size\) = 3 exceeds the network's 2 spiking "
                                         r"layer\(s\): expected 0 \(one block\) or 1 to 2") as error:
        STEP_MAKERS[maker](safjax.get_method("tbptt", block_size=3), net, optax.sgd(0.1))
    _one_line(error)
    STEP_MAKERS[maker](safjax.get_method("tbptt", block_size=2), net, optax.sgd(0.1))


# 10. Integer inputs, foreign optimizer states, TL-BPTT's params.

@pytest.mark.parametrize("dtype", [np.uint8, np.int32, bool])
def test_train_step_refuses_non_float_inputs(dtype):
    model = _mlp_model()
    optimizer = optax.sgd(0.1)
    step = safjax.make_train_step("saf_e", model.network, optimizer)
    params = model.params()
    with pytest.raises(ValueError, match=r"^`inputs` must be floating point .*got dtype "
                                         r".*astype\(jnp.float32\)") as error:
        step(params, optimizer.init(params), np.asarray(_inputs()).astype(dtype), LABELS)
    _one_line(error)


@pytest.mark.parametrize("maker", first_fast(list(STEP_MAKERS)))
def test_train_step_refuses_an_opt_state_of_another_optimizer_or_model(maker):
    model = _mlp_model()
    adam = optax.adam(1e-3)
    step = STEP_MAKERS[maker]("bptt", model.network, adam)
    params = model.params()
    foreign = {
        "another optimizer": optax.sgd(0.1, momentum=0.9).init(params),
        "another model": adam.init(_mlp_model(hidden=32).params()),
    }
    for opt_state in foreign.values():
        with pytest.raises(ValueError, match=r"^`opt_state` does not match optimizer.init\(params\).*"
                                             r"make it with optimizer.init\(params\)") as error:
            step(params, opt_state, _inputs(), LABELS)
        _one_line(error)
    step(params, adam.init(params), _inputs(), LABELS)


@pytest.mark.parametrize("maker", first_fast(list(STEP_MAKERS)))
def test_tl_bptt_params_are_explained_and_load_back(maker):
    model = _mlp_model()
    method = safjax.get_method("tbptt", block_size=1)
    optimizer = optax.sgd(0.1)
    step = STEP_MAKERS[maker](method, model.network, optimizer)
    with pytest.raises(ValueError, match=r"auxiliary heads.*method.init_params\(net, model.params\(\), key\).*"
                                         r"method.network_params\(params\)") as error:
        step(model.params(), optimizer.init(model.params()), _inputs(), LABELS)
    _one_line(error)
    params = method.init_params(model.network, model.params(), jax.random.key(0))
    params, _, _ = step(params, optimizer.init(params), _inputs(), LABELS)
    with pytest.raises(ValueError, match=r"TL-BPTT's auxiliary heads\? pass method.network_params\(params\)") as error:
        model.load_params(params)
    _one_line(error)
    model.load_params(method.network_params(params))
    for got, want in zip(jax.tree_util.tree_leaves(model.params()),
                         jax.tree_util.tree_leaves(method.network_params(params))):
        np.testing.assert_array_equal(got, want)
    outputs, _ = simulate.run(model.network, method.network_params(params), _inputs())
    model.eval()
    np.testing.assert_array_equal(model(_inputs()), outputs)


def test_reference_networks_are_not_warned_about():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for architecture in reference_nets.ARCHITECTURES:
            safjax.make_train_step("bptt", reference_nets.build(architecture), optax.sgd(0.1))
