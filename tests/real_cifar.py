"""The real CIFAR-10 (JPEG copy in ``../shared/data``, beside the clone) for real-data tests.

`extract_subset` writes the first N images of every class (by file name, ``0000.jpg`` …) into a
class-per-folder root, streaming the archive once, so a test decodes hundreds of images instead
of 60,000. Tests skip with a clear reason where the archive is absent.
"""

from __future__ import annotations

import os
import pathlib
import tarfile

import pytest

ARCHIVE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def archive_or_skip() -> pathlib.Path:
    """The archive's path; skips the calling test where it is absent."""
    if not ARCHIVE.exists():
        pytest.skip(f"real CIFAR-10 absent: {ARCHIVE} (the shared/ folder beside the clone) "
                    "is needed for real-data tests")
    return ARCHIVE


def extract_subset(destination: pathlib.Path, train_per_class: int, test_per_class: int) -> str:
    """``<destination>/cifar10-jpeg/{train,test}/<class>/NNNN.jpg`` with the first
    ``train_per_class`` / ``test_per_class`` images of each class; returns the root."""
    limits = {"train": train_per_class, "test": test_per_class}
    with tarfile.open(archive_or_skip(), "r:gz") as archive:
        for member in archive:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 4 or parts[1] not in limits:
                continue
            if int(os.path.splitext(parts[3])[0]) < limits[parts[1]]:
                archive.extract(member, destination, filter="data")
    return str(destination / "cifar10-jpeg")
