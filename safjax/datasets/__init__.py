"""Data sets. ``digits`` is embedded (ships with scikit-learn) and works offline."""

from safjax.datasets.digits import load_digits

__all__ = ["load_digits"]
