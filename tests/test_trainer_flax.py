"""The trainer runs registered plain-Flax models (issue 17): a factory of `safjax.models.MODELS` that
returns an `nnx.Module` (one time step per call, safjax cells) trains with any method, data-parallel,
resumes exactly, evaluates with dropout off, records its spikes per cell, and says in one line what
reads a Sequential's structure only (the synaptic-operation count, NIR export)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from PIL import Image

import safjax
from safjax import models, parallel, simulate, step_builder, trainer
from safjax.checkpoints import Checkpointer
from safjax.engine.flax_model import FlaxModel
from safjax.experiment_config import ExperimentConfig
from budget import first_fast

NAME = "flax_mlp"  # registered by the `registered` fixture


class FlaxMLP(nnx.Module):
    """Flattened image → dense → a safjax cell → (dropout) → dense readout, one step per call."""

    def __init__(self, rngs, neuron, leak, threshold, num_classes, input_shape, hidden, dropout, reset):
        self.fc1 = nnx.Linear(math.prod(input_shape), hidden, rngs=rngs)
        self.lif1 = models.neuron_module(neuron, leak, threshold, reset)
        self.drop = nnx.Dropout(dropout, rngs=rngs) if dropout else None
        self.out = nnx.Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, x):
        s = self.lif1(self.fc1(x.reshape(x.shape[0], -1)))
        return self.out(s if self.drop is None else self.drop(s))


def flax_mlp(rngs, neuron="lif", leak=0.5, threshold=1.0, num_classes=10, input_shape=(8, 8, 1), width=1.0,
             dropout=0.0, reset="soft"):
    return FlaxMLP(rngs, neuron, leak, threshold, num_classes, input_shape, models.scaled(64, width), dropout,
                   reset)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(models.MODELS, NAME, flax_mlp)


def _config(**overrides) -> ExperimentConfig:
    settings = dict(model=NAME, epochs=1, time_steps=4, batch_size=32, log_every=1000, learning_rate=0.01,
                    optimizer="adam")
    return ExperimentConfig(**{**settings, **overrides})


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


@pytest.mark.parametrize("method", first_fast(["saf_e", "bptt"]))
def test_a_registered_flax_model_trains_to_a_sane_accuracy(registered, method):
    results = trainer.train_and_evaluate(_config(method=method, epochs=2))
    assert results["model"] == NAME and results["epochs_completed"] == 2
    assert results["test_accuracy"] > 0.5, results["test_accuracy_history"]


def test_the_step_model_params_are_plain_dicts_that_every_method_step_accepts(registered):
    setup = trainer.initial_state(_config(), _digits())
    assert isinstance(setup.net, FlaxModel) and setup.net.cell_shapes == ((64,),)
    assert type(setup.params) is dict and set(setup.params) == {"fc1", "out"}
    images, labels = _digits_batch()
    state = setup.net.params_state
    optimizer = optax.sgd(0.1)
    step = jax.jit(lambda p, x, y: safjax.get_method("saf_e").train_step(
        setup.net, p, optimizer.init(p), x, y, optimizer=optimizer, config=safjax.TrainConfig()))
    from_state, from_dict = step(state, images, labels), step(setup.params, images, labels)
    assert float(from_state[2].loss) == float(from_dict[2].loss)
    for a, b in zip(_leaves(from_state[0]), _leaves(from_dict[0])):  # the same update, as plain dicts
        np.testing.assert_array_equal(a, b)
    assert type(from_dict[0]) is dict


def test_the_data_parallel_step_trains_a_flax_model_like_the_single_device_step(registered):
    setup = trainer.initial_state(_config(method="bptt"), _digits())
    images, labels = _digits_batch()
    optimizer = optax.sgd(0.5)
    mesh = parallel.make_mesh(4)
    step = parallel.make_parallel_train_step("bptt", setup.net, optimizer, mesh)
    params, _, metrics = step(setup.params, optimizer.init(setup.params), images, labels)
    single = safjax.make_train_step("bptt", flax_mlp(nnx.Rngs(0)), optimizer)  # the user API, nnx.State
    state = setup.net.params_state
    expected, _, expected_metrics = single(state, optimizer.init(state), images, labels)
    np.testing.assert_allclose(float(metrics.loss), float(expected_metrics.loss), rtol=1e-6)
    for a, b in zip(_leaves(params), _leaves(nnx.to_pure_dict(expected))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="parameter tree does not match"):  # another model's params
        step({"fc1": setup.params["fc1"]}, optimizer.init(setup.params), images, labels)
    with pytest.raises(ValueError, match=r"^make_parallel_train_step takes a Flax model as its shaped step model"):
        parallel.make_parallel_train_step("bptt", flax_mlp(nnx.Rngs(0)), optimizer, mesh)


def test_dropout_draws_a_key_per_minibatch_and_is_off_in_evaluation(registered):
    setup = trainer.initial_state(_config(dropout=0.5), _digits())
    assert step_builder.needs_key(setup.method, setup.net)
    assert not step_builder.needs_key(setup.method, trainer.initial_state(_config(), _digits()).net)
    images, _ = _digits_batch()
    evaluated = simulate.run(setup.eval_net, setup.params, images)[0]
    without = flax_mlp(nnx.Rngs(0), dropout=0.5)
    without.drop.rate = 0.0  # the same params, dropout the identity
    reference = simulate.run(FlaxModel(without).with_input((8, 8, 1), jnp.float32), setup.params, images)[0]
    np.testing.assert_array_equal(np.asarray(evaluated), np.asarray(reference))
    bound = setup.net.bind(jax.random.key(3))  # training: a mask, so other outputs
    assert not np.array_equal(np.asarray(simulate.run(bound, setup.params, images)[0]), np.asarray(reference))


def test_a_narrow_cell_is_warned_about_by_its_name(registered):
    setup = trainer.initial_state(_config(width=0.03), _digits())  # 64 × 0.03 → 2 units
    with pytest.warns(UserWarning, match="'lif1': 2"):
        step_builder.check_layer_widths(setup.net)


def test_bf16_precision_is_refused_for_a_flax_model_in_one_line(registered):
    with pytest.raises(ValueError, match=rf"^--precision=bf16 is invalid for --model={NAME}, a plain Flax"):
        trainer.initial_state(_config(precision="bf16"), _digits())


def test_what_a_method_cannot_train_on_a_flax_model_is_refused_in_one_line(registered):
    with pytest.raises(ValueError, match=r"^tbptt: local blocks .*needs a safjax.nn.Sequential model"):
        trainer.train_and_evaluate(_config(method="tbptt", method_settings={"block_size": 1}))


@pytest.fixture(scope="module")
def flax_runs(tmp_path_factory):
    """One run of 2 epochs with dropout, checkpointed every 5 minibatches (a module-scoped monkeypatch)."""
    patch = pytest.MonkeyPatch()
    patch.setitem(models.MODELS, NAME, flax_mlp)
    root = tmp_path_factory.mktemp("flax_runs")
    config = _config(method="saf_e", epochs=2, train_examples=256, test_examples=96, checkpoint_every=5,
                     dropout=0.2, workdir=str(root / "reference"))
    results = trainer.train_and_evaluate(config)
    yield root, config, results
    patch.undo()


def _final_state(workdir):
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        return checkpointer._manager.restore(max(checkpointer._manager.all_steps()))["state"]
    finally:
        checkpointer.close()


@pytest.mark.slow
def test_a_resumed_flax_run_ends_exactly_like_the_uninterrupted_one(flax_runs, registered, capsys):
    root, config, reference = flax_runs
    resumed = root / "resumed"
    shutil.copytree(config.workdir, resumed)
    steps = sorted(int(s) for s in os.listdir(resumed / "checkpoints") if s.isdigit())
    assert steps == [10, 15, 16]  # 8 minibatches per epoch: resume from minibatch 10, inside epoch 2
    for step in steps[1:]:
        shutil.rmtree(resumed / "checkpoints" / str(step))
    os.remove(resumed / "results.json")
    again = trainer.train_and_evaluate(dataclasses.replace(config, workdir=str(resumed)))
    assert f"resumed from {resumed / 'checkpoints'}/10" in capsys.readouterr().out
    assert again["train_loss_history"] == reference["train_loss_history"]
    assert again["test_accuracy"] == reference["test_accuracy"]
    for a, b in zip(_leaves(_final_state(config.workdir)), _leaves(_final_state(resumed))):
        np.testing.assert_array_equal(a, b)


def test_results_json_says_in_one_line_why_no_synaptic_operations_are_counted(flax_runs):
    root, config, _ = flax_runs
    saved = json.loads(open(os.path.join(config.workdir, "results.json")).read())
    assert saved["synaptic_operations"] is None and saved["energy_estimate"] is None
    note = saved["synaptic_operations_note"]
    assert "\n" not in note and "FlaxMLP is a plain Flax model" in note and "nn.Sequential" in note
    epochs = [json.loads(line) for line in open(os.path.join(config.workdir, "metrics.jsonl"))
              if "test_accuracy" in line]
    assert len(epochs) == 2 and all(len(e["firing_rates"]) == 1 for e in epochs)  # one per cell
    for plot in ("firing_rates.png", "spike_raster.png"):
        assert os.path.getsize(os.path.join(config.workdir, "plots", plot)) > 1000


def test_nir_export_of_a_flax_run_is_refused_in_one_line(flax_runs, registered, tmp_path):
    pytest.importorskip("nir")
    from safjax import deploy
    from safjax import nir as nir_lib

    _, config, _ = flax_runs
    with pytest.raises(ValueError, match=rf"--model={NAME}, a plain Flax model .*NIR export needs an "
                                         r"nn.Sequential model") as error:
        deploy.export_run(config.workdir, str(tmp_path / "m.nir"), log=lambda _: None)
    assert "\n" not in str(error.value) and not (tmp_path / "m.nir").exists()
    setup = trainer.initial_state(config, _digits())
    with pytest.raises(ValueError, match="^safjax.nir.export exports a safjax.Network .* got FlaxMLP"):
        nir_lib.export(setup.net, setup.params)


def _write_image_folder(root, size=8, per_class=8):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, name in enumerate(("dark", "light")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 100, (size, size, 3)) + 150 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")


@pytest.mark.slow  # ~3 min on 2 CPU cores: building and compiling resnet18 (train step, evaluation)
def test_the_train_command_runs_a_registered_flax_model_and_export_refuses_it(tmp_path):
    if "resnet18" not in models.MODELS:
        pytest.skip("safjax.models.MODELS has no resnet18 (a registered plain-Flax model) yet")
    _write_image_folder(tmp_path / "images")
    env = {**os.environ, "SAFJAX_CACHE_DIR": str(tmp_path / "cache")}
    workdir = tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "experiments.train", "--model=resnet18", "--width=0.0625",
                          f"--dataset=image_folder:{tmp_path / 'images'}", "--epochs=1", "--batch_size=8",
                          "--time_steps=2", "--method=bptt", f"--workdir={workdir}"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["model"] == "resnet18" and saved["synaptic_operations"] is None
    assert "plain Flax model" in saved["synaptic_operations_note"]
    if not _has_nir():
        return
    export = subprocess.run([sys.executable, "-m", "experiments.export", f"--workdir={workdir}",
                             f"--output={tmp_path / 'm.nir'}"], capture_output=True, text=True, env=env, timeout=300)
    assert export.returncode != 0 and "Traceback" not in export.stderr
    assert "--model=resnet18, a plain Flax model" in export.stderr
    assert "NIR export needs an nn.Sequential model" in export.stderr


def _has_nir() -> bool:
    try:
        import nir  # noqa: F401
    except ImportError:
        return False
    return True


def _digits():
    return trainer._load_data(_config())[0]


def _digits_batch(time_steps=4, batch=32):
    train_set = _digits()
    images = jnp.asarray(train_set.inputs[:batch], jnp.float32)
    return safjax.encoding.direct(images, time_steps), jnp.asarray(train_set.labels[:batch])


class FlaxBNMLP(FlaxMLP):
    """Flattened image → dense → BatchNorm (training mode) → a safjax cell → dense readout."""

    def __init__(self, rngs, *args):
        super().__init__(rngs, *args)
        self.norm = nnx.BatchNorm(self.fc1.out_features, rngs=rngs)

    def __call__(self, x):
        return self.out(self.lif1(self.norm(self.fc1(x.reshape(x.shape[0], -1)))))


def flax_bn_mlp(rngs, neuron="lif", leak=0.5, threshold=1.0, num_classes=10, input_shape=(8, 8, 1), width=1.0,
                dropout=0.0, reset="soft"):
    return FlaxBNMLP(rngs, neuron, leak, threshold, num_classes, input_shape, models.scaled(64, width), 0.0, reset)


@pytest.mark.slow
def test_batch_norm_running_statistics_train_checkpoint_and_resume_with_the_run(monkeypatch, tmp_path, capsys):
    """BatchNorm in training mode through the trainer (BPTT): the running statistics travel with the
    optimizer state (parallel.train_state), move away from their initial values, are checkpointed, and
    a resumed run ends exactly like the uninterrupted one; SAF refuses the model in one line."""
    monkeypatch.setitem(models.MODELS, "flax_bn_mlp", flax_bn_mlp)
    config = _config(model="flax_bn_mlp", method="bptt", epochs=2, train_examples=256, test_examples=96,
                     checkpoint_every=5, workdir=str(tmp_path / "reference"))
    reference = trainer.train_and_evaluate(config)
    assert reference["test_accuracy"] > 0.5
    state = _final_state(config.workdir)
    mean = np.asarray(state["opt_state"][1][0])  # the first running statistic: the BatchNorm's mean
    assert mean.shape == (64,) and np.max(np.abs(mean)) > 1e-3
    resumed = tmp_path / "resumed"
    shutil.copytree(config.workdir, resumed)
    for step in (15, 16):
        shutil.rmtree(resumed / "checkpoints" / str(step))
    os.remove(resumed / "results.json")
    again = trainer.train_and_evaluate(dataclasses.replace(config, workdir=str(resumed)))
    assert f"resumed from {resumed / 'checkpoints'}/10" in capsys.readouterr().out
    assert again["test_accuracy"] == reference["test_accuracy"]
    for a, b in zip(_leaves(state), _leaves(_final_state(resumed))):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="saf_e needs .*BatchNorm that normalises by the current minibatch"):
        trainer.train_and_evaluate(dataclasses.replace(config, method="saf_e", workdir=""))


@pytest.mark.slow
def test_data_parallel_running_means_equal_the_single_device_ones(monkeypatch):
    """Each device normalises by its own shard; the running means, averaged over the 4 devices, equal one
    device's (the mean is linear in the batch; the BatchNorm input fc(x) does not depend on spikes)."""
    model = flax_bn_mlp(nnx.Rngs(0))
    net = FlaxModel(model).with_input((8, 8, 1), jnp.float32)
    optimizer = optax.sgd(0.0)
    params = nnx.to_pure_dict(net.params_state)
    inputs, labels = _digits_batch()
    step = parallel.make_parallel_train_step("bptt", net, optimizer, parallel.make_mesh(4))
    _, (_, stats), _ = step(params, parallel.train_state(net, optimizer.init(params)), inputs, labels)
    single = safjax.make_train_step("bptt", model, optimizer)
    state = nnx.state(model, nnx.Param)
    single(state, optimizer.init(state), inputs, labels)
    assert np.max(np.abs(model.norm.mean.get_value())) > 1e-3  # the statistics moved
    np.testing.assert_allclose(stats[0], model.norm.mean.get_value(), rtol=1e-5, atol=1e-7)
