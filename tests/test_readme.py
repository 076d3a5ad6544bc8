"""The README's example runs as written, and switching methods is changing one string."""

import pathlib
import re

import numpy as np
import pytest
from budget import first_fast

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _example() -> str:
    return re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)


def test_example_is_short():
    assert len(_example().strip().splitlines()) < 25


@pytest.mark.parametrize("method", ["saf_e", "bptt"])
def test_example_runs_with_one_string_changed(method):
    code = _example().replace('"saf_e"', f'"{method}"').replace("print(", "(")
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert np.isfinite(float(namespace["metrics"].loss))
    assert namespace["model"].params()["readout"][0]["kernel"].shape == (128, 10)


def _flax_example() -> str:
    section = README.read_text().split("## Bring your own Flax model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_flax_example_is_short():
    assert len(_flax_example().strip().splitlines()) < 25


@pytest.mark.parametrize("method", first_fast(["saf_e", "sltt"]))
def test_flax_example_runs_as_written(method):
    """The "Bring your own Flax model" block: a plain nnx.Module with nnx.Conv / nnx.Linear and safjax cells."""
    code = _flax_example().replace('"saf_e"', f'"{method}"')
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert np.isfinite(float(namespace["metrics"].loss))
    model, params = namespace["model"], namespace["params"]
    assert np.array_equal(model.out.kernel.get_value(), params["out"]["kernel"].get_value())
