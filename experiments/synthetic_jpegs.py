"""Generated JPEG image folders: streaming throughput (experiments/pipeline_throughput.py) and the
bounded-memory test (tests/test_streaming_memory.py) need ImageNet-sized files without ImageNet."""

from __future__ import annotations

import os

import numpy as np


def write_jpegs(root: str, count: int, size: int, split: str = "train", classes: int = 2, seed: int = 0,
                prefix: str = "") -> int:
    """Write ``count`` smooth-noise size×size RGB JPEGs (quality 90; photograph-like: noise
    upsampled from 1/8 of the size, about 10–20 kB at 224²) into ``classes`` class folders of
    ``root/split``, named ``<prefix><i>.jpg``; return their total bytes on disk."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = max(size // 8, 2)
    total = 0
    for i in range(count):
        folder = os.path.join(root, split, f"class{i % classes}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{prefix}{i:06d}.jpg")
        noise = Image.fromarray(rng.integers(0, 256, (coarse, coarse, 3), dtype=np.uint8))
        noise.resize((size, size), Image.BILINEAR).save(path, quality=90)
        total += os.path.getsize(path)
    return total
