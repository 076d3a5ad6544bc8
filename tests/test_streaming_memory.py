"""Streaming keeps host memory flat: two epochs over an image folder whose decoded images are
several times the asserted bound on the growth of resident memory (the trainer's process and its
data workers together)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments import synthetic_jpegs
from safjax import data_loader, input_pipeline
from safjax.datasets import image_folder

IMAGES, SIZE, BATCH = 3000, 224, 32
GROWTH_BOUND = 64 * 2**20  # bytes of resident memory the second epoch's peak may add to the first's


def _resident_bytes() -> int:
    """Resident memory of this process and its children (data workers), in bytes."""
    import psutil

    process = psutil.Process()
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@pytest.mark.slow  # writes 3,000 224² JPEGs (~5 s) and decodes them twice with 2 workers (~10 s)
def test_two_epochs_of_a_streamed_imagenet_format_folder_keep_memory_flat(tmp_path, monkeypatch):
    monkeypatch.setenv(image_folder.CACHE_ENV, str(tmp_path / "cache"))
    synthetic_jpegs.write_jpegs(str(tmp_path / "images"), IMAGES, SIZE, classes=10)
    dataset = image_folder.load(str(tmp_path / "images"), "train", image_size=SIZE)
    decoded_bytes = IMAGES * SIZE * SIZE * 3
    assert decoded_bytes > 6 * GROWTH_BOUND  # the whole set in memory would break the bound six times over
    per_epoch = input_pipeline.steps_per_epoch(len(dataset), BATCH)
    batches = data_loader.train_batches(dataset, batch_size=BATCH, seed=0, first_step=0, total_steps=2 * per_epoch,
                                        augment=True, workers=2)
    samples, seen = [], 0
    try:
        for step, _, _, inputs, labels in batches:
            assert inputs.shape == (BATCH, SIZE, SIZE, 3) and np.isfinite(inputs).all()
            seen += len(labels)
            samples.append(_resident_bytes())
    finally:
        batches.close()
    assert seen == 2 * per_epoch * BATCH and step == 2 * per_epoch - 1
    first, second = max(samples[:per_epoch]), max(samples[per_epoch:])
    growth = second - first  # flat: the second epoch holds no more than the first (nothing is kept)
    print(f"resident memory: peak {first / 2**20:.0f} MiB in epoch 1, {second / 2**20:.0f} MiB in epoch 2; "
          f"the decoded images: {decoded_bytes / 2**20:.0f} MiB")
    assert growth < GROWTH_BOUND, f"resident memory grew by {growth / 2**20:.0f} MiB in the second epoch"
