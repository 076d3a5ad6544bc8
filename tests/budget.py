"""The default test run's time budget (README: ≤ 5 minutes on the 2-core CPU).

The default run (``python -m pytest -q``) checks every identity, method and binary at least once;
``python -m pytest -q -m slow`` runs the other cases of a parametrised test as well as the long
tests. ``first_fast`` splits a parametrisation that way.
"""
import pytest
from _pytest.mark.structures import ParameterSet


def first_fast(cases, keep: int = 1) -> list:
    """``cases`` with all but the first ``keep`` marked slow (pytest.param keeps their ids and marks)."""
    out = []
    for index, case in enumerate(cases):
        if index < keep:
            out.append(case)
        elif isinstance(case, ParameterSet):
            out.append(pytest.param(*case.values, marks=(*case.marks, pytest.mark.slow), id=case.id))
        else:
            values = case if isinstance(case, tuple) else (case,)
            out.append(pytest.param(*values, marks=pytest.mark.slow))
    return out
