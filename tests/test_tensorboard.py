"""The TensorBoard writer: what it writes, TensorBoard's own reader reads back."""

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.summary.writer import event_file_writer

from safjax.tensorboard import SummaryWriter


def _read(logdir) -> dict[str, list[tuple[int, float]]]:
    accumulator = EventAccumulator(str(logdir))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def test_scalars_round_trip_through_tensorboards_reader(tmp_path):
    with SummaryWriter(str(tmp_path / "tb")) as writer:
        for epoch in range(1, 4):
            writer.scalar("train/loss", 1.0 / epoch, epoch)
            writer.scalars({"test/accuracy": 0.5 + 0.1 * epoch,
                            "firing_rate/layer_0": np.float32(0.25)}, step=np.int64(epoch))
    assert _read(tmp_path / "tb") == {
        "train/loss": [(1, 1.0), (2, pytest.approx(0.5)), (3, pytest.approx(1 / 3))],
        "test/accuracy": [(1, pytest.approx(0.6)), (2, pytest.approx(0.7)), (3, pytest.approx(0.8))],
        "firing_rate/layer_0": [(1, 0.25), (2, 0.25), (3, 0.25)],
    }


def test_flush_makes_events_readable_before_close(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    writer.scalar("loss", 2.5, 0)
    writer.flush()
    assert _read(tmp_path) == {"loss": [(0, 2.5)]}
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.scalar("loss", 1.0, 1)


def test_a_resumed_run_replaces_the_steps_it_rewrites(tmp_path):
    with SummaryWriter(str(tmp_path)) as killed:  # got to step 4, checkpointed at step 2
        for step in range(1, 5):
            killed.scalar("loss", float(step), step)
    with SummaryWriter(str(tmp_path), purge_step=3) as resumed:
        for step in range(3, 6):
            resumed.scalar("loss", 10.0 * step, step)
    assert _read(tmp_path) == {"loss": [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0), (5, 50.0)]}


def test_a_resume_in_the_same_second_is_read_after_the_killed_run(tmp_path, monkeypatch):
    # TensorBoard orders event files by name: <second>.<host>.<pid>.<counter>, compared as text.
    # Counter 9 then 10 in one second sorted the resumed file first and lost steps 1-2 (seen in CI).
    monkeypatch.setattr(event_file_writer, "_global_uid", event_file_writer.AtomicCounter(9))
    with SummaryWriter(str(tmp_path)) as killed:
        killed.scalars({"loss": 1.0}, 1)
        killed.scalars({"loss": 2.0}, 2)
    with SummaryWriter(str(tmp_path), purge_step=2) as resumed:
        resumed.scalar("loss", 20.0, 2)
    assert _read(tmp_path) == {"loss": [(1, 1.0), (2, 20.0)]}
    first, second = sorted(p.name for p in tmp_path.iterdir())
    assert first.endswith(".9") and second.endswith(".10")


@pytest.mark.parametrize("tag,step,match", [
    ("", 0, "`tag`"), ("loss", -1, "`step`"), ("loss", 1.5, "`step`"), ("loss", True, "`step`"),
])
def test_bad_arguments_raise_naming_them(tmp_path, tag, step, match):
    with SummaryWriter(str(tmp_path)) as writer, pytest.raises(ValueError, match=match):
        writer.scalar(tag, 1.0, step)
