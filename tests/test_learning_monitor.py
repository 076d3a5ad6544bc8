"""The not-learning warnings (`safjax.learning_monitor`), on histories a person can read."""

from __future__ import annotations

from safjax import learning_monitor

# SAF-F on real CIFAR-10 at lr 0.1, one H200 (../shared/results/h200-2026-11-30/saf_f_6.log).
H200_SAF_F = [
    dict(epoch=1, train_loss=18.1025, test_accuracy=0.1,
         firing_rates=[0.3021, 0.3742, 0.4357, 0.4459, 0.5216, 0.4474, 0.4224, 0.0574]),
    dict(epoch=2, train_loss=16.2319, test_accuracy=0.1,
         firing_rates=[0.3026, 0.3741, 0.4358, 0.4456, 0.5216, 0.4474, 0.4224, 0.0574]),
]
# SAF-E on the same data and machine (saf_e_30.log, epochs 1–2): learning.
H200_SAF_E = [
    dict(epoch=1, train_loss=1.4964, test_accuracy=0.5631,
         firing_rates=[0.1322, 0.2141, 0.2169, 0.2745, 0.2135, 0.2084, 0.1084, 0.0288]),
    dict(epoch=2, train_loss=1.0995, test_accuracy=0.6742,
         firing_rates=[0.1514, 0.2099, 0.2035, 0.2603, 0.1827, 0.1628, 0.0954, 0.0281]),
]


def test_the_h200_saf_f_failure_is_flagged_both_ways():
    found = learning_monitor.learning_warnings(H200_SAF_F, first_loss=2.21, num_classes=10)
    assert set(found) == {"diverging", "frozen"}
    assert "epoch 1's training loss 18.1" in found["diverging"] and "untrained level 2.21" in found["diverging"]
    assert "0.1000 is at chance (1/10) after epoch 2" in found["frozen"]
    assert all(line.count("\n") == 0 and "--learning_rate" in line for line in found.values())


def test_a_learning_run_is_not_flagged():
    assert learning_monitor.learning_warnings(H200_SAF_E, first_loss=2.30, num_classes=10) == {}


def test_chance_accuracy_with_moving_rates_is_not_frozen():
    history = [dict(H200_SAF_F[0], train_loss=2.2), dict(H200_SAF_F[1], train_loss=2.1,
                                                          firing_rates=[0.31] * 8)]
    assert learning_monitor.learning_warnings(history, first_loss=2.3, num_classes=10) == {}


def test_frozen_rates_above_chance_are_not_flagged():
    history = [dict(H200_SAF_F[0], train_loss=2.0, test_accuracy=0.4),
               dict(H200_SAF_F[1], train_loss=1.9, test_accuracy=0.41)]
    assert learning_monitor.learning_warnings(history, first_loss=2.3, num_classes=10) == {}


def test_a_loss_climbing_without_nan_is_diverging():
    history = [dict(epoch=1, train_loss=1.7e10, test_accuracy=0.3, firing_rates=[0.5])]
    found = learning_monitor.learning_warnings(history, first_loss=2.3, num_classes=10)
    assert list(found) == ["diverging"]
    # A loss at the first minibatch's level (noise, not divergence) is not flagged.
    history = [dict(epoch=1, train_loss=2.35, test_accuracy=0.3, firing_rates=[0.5])]
    assert learning_monitor.learning_warnings(history, first_loss=2.3, num_classes=10) == {}
    # Without the first loss, ln C is the untrained level: 2.35 < 1.1 · ln 10 = 2.53, 2.6 is above.
    assert learning_monitor.learning_warnings(history, first_loss=None, num_classes=10) == {}
    history = [dict(epoch=1, train_loss=2.6, test_accuracy=0.3, firing_rates=[0.5])]
    assert "ln 10" in learning_monitor.learning_warnings(history, first_loss=None, num_classes=10)["diverging"]


def test_the_trainer_prints_and_records_a_diverging_run(capsys):
    from safjax import trainer
    from safjax.experiment_config import ExperimentConfig

    results = trainer.train_and_evaluate(ExperimentConfig(epochs=1, learning_rate=1e9, num_devices=1))
    assert len(results["warnings"]) == 1 and "diverging" in results["warnings"][0]
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert printed == results["warnings"]
