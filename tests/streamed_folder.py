"""A small streamed image folder for end-to-end runs of the training binary."""

from __future__ import annotations

import numpy as np
from PIL import Image


def write(root, train=40, test=10, classes=3, size=8) -> list[str]:
    """Write ``classes`` × ``train``/``test`` size×size PNGs (class c brighter by 80·c) under
    ``root``; return the flags that train on them streamed, with a digits-sized model."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for label in range(classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                image = rng.integers(0, 80, (size, size, 3)) + 80 * label
                Image.fromarray(image.astype(np.uint8)).save(folder / f"{i:02d}.png")
    return [f"--dataset=image_folder:{root}", "--model=digits_mlp"]
