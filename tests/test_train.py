"""The trainer and its entry point: learns digits, writes its outputs, trains every method on
mocked CIFAR-10, keeps SAF-E ≡ OTTT_O end to end, validates flags with one clear line."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from safjax import trainer
from safjax.experiment_config import ExperimentConfig

import background
from budget import first_fast


def test_short_saf_e_run_learns_digits_and_writes_its_outputs(tmp_path):
    results = trainer.train_and_evaluate(ExperimentConfig(epochs=3, workdir=str(tmp_path)))
    assert results["test_accuracy"] >= 0.95
    saved = json.loads((tmp_path / "results.json").read_text())
    for key in ("method", "dataset", "model", "time_steps", "num_devices", "epochs_completed",
                "test_accuracy", "train_loss_history", "examples_per_second", "peak_memory_bytes"):
        assert key in saved, key
    assert saved["method"] == "saf_e" and saved["model"] == "digits_mlp"
    assert len(saved["train_loss_history"]) == 3 and 0 <= saved["test_accuracy"] <= 1
    assert saved["examples_per_second"] > 0 and saved["peak_memory_bytes"] > 0
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [line for line in lines if "test_accuracy" in line]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert [e["train_loss"] for e in epochs] == saved["train_loss_history"]
    assert len(lines) > len(epochs)  # minibatch-interval lines too (log_every=50 < 132 minibatches)
    for name in ("training_curves", "firing_rates", "spike_raster"):
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 1000
    assert list((tmp_path / "tensorboard").iterdir())


def _loss_history(method, time_steps, learning_rate, seed=0):
    config = ExperimentConfig(method=method, time_steps=time_steps, epochs=1, learning_rate=learning_rate,
                              batch_size=64, num_devices=1, seed=seed)
    return np.array(trainer.train_and_evaluate(config)["train_loss_history"])


@pytest.mark.slow
def test_saf_e_and_ottt_o_give_the_same_loss_history():
    """Theorem 1 end to end. At T = 1 both make the same single update per minibatch, so the
    histories agree to float32 rounding. For T > 1 the per-step gradients are identical
    (tests/test_identities.py) but after an in-minibatch update OTTT's membrane still holds
    λ·W_old·s while SAF recomputes with W_new: O(lr²) per minibatch only while both fire the same
    spikes, O(lr) once one flips, which happens in some minibatches even at lr = 1e-4 (docs/methods.md
    §4.6). So the T = 4 histories are compared statistically: the two methods must differ by much
    less than changing the seed does (measured: 1.1e-3 against 1.8e-2)."""
    np.testing.assert_allclose(_loss_history("saf_e", 1, 1e-3), _loss_history("ottt_o", 1, 1e-3), rtol=1e-5)
    saf_e, ottt_o = _loss_history("saf_e", 4, 1e-4), _loss_history("ottt_o", 4, 1e-4)
    other_seed = _loss_history("saf_e", 4, 1e-4, seed=1)
    assert np.max(np.abs(saf_e - ottt_o)) < 0.25 * np.max(np.abs(saf_e - other_seed)), (saf_e, ottt_o, other_seed)


@pytest.fixture
def mocked_cifar10(monkeypatch, tmp_path):
    monkeypatch.setenv("SAFJAX_CACHE_DIR", str(tmp_path / "cache"))
    with tfds.testing.mock_data(num_examples=8):
        yield


@pytest.mark.parametrize("method", [
    "saf_e", pytest.param("saf_f", marks=pytest.mark.slow), pytest.param("ottt_a", marks=pytest.mark.slow),
    pytest.param("ottt_o", marks=pytest.mark.slow), pytest.param("spike_rep", marks=pytest.mark.slow),
    pytest.param("bptt", marks=pytest.mark.slow), pytest.param("tbptt", marks=pytest.mark.slow),
])
def test_one_epoch_per_method_on_mocked_cifar10(method, mocked_cifar10, tmp_path):
    config = ExperimentConfig(method=method, dataset="cifar10", model="reference_conv", time_steps=2,
                              epochs=1, batch_size=4, eval_batch_size=4, num_devices=1,
                              optimizer="sgd", learning_rate=0.01, schedule="cosine",
                              method_settings={"truncation": 1} if method == "tbptt" else {},
                              workdir=str(tmp_path / "run"))
    results = trainer.train_and_evaluate(config)
    assert results["dataset"] == "cifar10" and results["epochs_completed"] == 1
    assert np.isfinite(results["train_loss_history"]).all() and 0 <= results["test_accuracy"] <= 1


# The first two in the default run (each is a process of Python and JAX start-up), all with -m slow.
BAD_FLAGS = first_fast([
    ("--method=sgd", "--method='sgd' is invalid"),
    ("--truncation=2", "--truncation is a setting of tbptt, not of --method=saf_e (which takes none)"),
    ("--time_steps=0", "--time_steps=0 is invalid"),
    ("--batch_size=2000", "--batch_size=2000 is invalid: it exceeds the 1437 training examples"),
    ("--leak=1.5", "--leak=1.5 is invalid: expected a number in (0, 1]"),
    ("--neuron=izhikevich", "--neuron='izhikevich' is invalid"),
    ("--dataset=mnist", "--dataset='mnist' is invalid"),
    ("--optimizer=rmsprop", "--optimizer='rmsprop' is invalid"),
    ("--method=tbptt --window_mode=sum", "--method=tbptt: `window_mode` must be one of"),
    ("--config=imagenet", "--config='imagenet' is invalid"),
], keep=2)


def _bad_flag_run(flag: str) -> background.Run:
    return background.Run(["-m", "experiments.train", *flag.split()])


@pytest.fixture(scope="module")
def bad_flag_runs(request):
    """The bad-flag runs of the binary ({flag: background.Run}): those of this process's selected
    tests started together (each is mostly Python start-up on one core, and they are independent),
    any other when its test asks for it."""
    runs = {flag: _bad_flag_run(flag) for flag in
            background.selected_values(request, "test_bad_flags_exit_nonzero_with_one_clear_line", "flag")}
    yield runs
    for run in runs.values():
        run.stop()


@pytest.fixture(scope="module", autouse=True)
def _start_the_binaries_first(request):
    """The bad-flag runs go on while this module's in-process tests run (see background.py)."""
    if background.selected(request, "test_bad_flags_exit_nonzero_with_one_clear_line"):
        request.getfixturevalue("bad_flag_runs")


@pytest.mark.parametrize("flag,match", BAD_FLAGS)
def test_bad_flags_exit_nonzero_with_one_clear_line(flag, match, bad_flag_runs):
    if flag not in bad_flag_runs:  # not started ahead (another distribution than loadfile)
        bad_flag_runs[flag] = _bad_flag_run(flag)
    run = bad_flag_runs[flag].result(timeout=300)
    assert run.returncode != 0
    assert match in run.stderr
    assert "Traceback" not in run.stderr


def test_batch_size_must_divide_over_devices():
    with pytest.raises(ValueError, match="--batch_size=30 is invalid: expected a multiple of the 4 devices"):
        trainer.train_and_evaluate(ExperimentConfig(batch_size=30, num_devices=4, epochs=1))


def test_presets_are_valid_and_flags_override_them():
    from experiments import presets

    for name in presets.PRESETS:
        presets.resolve(name, {}).validate()  # every preset names real methods, models, data
    assert presets.resolve("digits_events_tlbptt", {}).method_settings == {"truncation": 2, "block_size": 2}
    assert presets.resolve("digits_events_tlbptt", {"method": "bptt"}).method_settings == {}  # dropped
    config = presets.resolve("cifar10_vgg11", {"time_steps": 2})
    assert config.time_steps == 2 and config.dataset == "cifar10" and config.optimizer == "sgd"
    assert config.learning_rate == 0.1 and config.schedule == "cosine"


def test_non_finite_loss_stops_naming_the_minibatch_and_keeps_the_last_checkpoint(tmp_path):
    # BPTT updates once per minibatch: minibatch 1 is finite, SGD at 1e38 then overflows the weights.
    config = ExperimentConfig(method="bptt", epochs=1, optimizer="sgd", learning_rate=1e38,
                              checkpoint_every=1, workdir=str(tmp_path))
    with pytest.raises(FloatingPointError, match=r"non-finite training loss \((nan|inf)\) at minibatch 2 "
                       r"\(epoch 1\); the last good checkpoint is minibatch 1 in .*checkpoints; lower --learning_rate"):
        trainer.train_and_evaluate(config)
    assert any(p.name.isdigit() for p in (tmp_path / "checkpoints").iterdir())
    assert not (tmp_path / "results.json").exists()
