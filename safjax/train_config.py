"""`TrainConfig`: what every training method shares (hashable: a `jit` static argument).

A method's own settings (BPTT's ``remat``, TBPTT's window, SLTT-K's K, …) are arguments of its
factory (`safjax.methods`), not fields here.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How any method trains one minibatch.

    Attributes:
      mse_weight: γ of the loss (1 − γ)·CE + γ·MSE (docs/methods.md §1.4; 0.05 on CIFAR, 0 → pure CE).
      unroll: `lax.scan`'s ``unroll`` for the time loop (1 = rolled loop, True = fully unrolled).
    """

    mse_weight: float = 0.05
    unroll: int | bool = 1

    def __post_init__(self):
        if not 0.0 <= self.mse_weight <= 1.0:
            raise ValueError(f"`mse_weight` must lie in [0, 1], got {self.mse_weight!r}.")
        if not (self.unroll is True or (isinstance(self.unroll, int) and self.unroll >= 1)):
            raise ValueError(f"`unroll` must be True or an int ≥ 1, got {self.unroll!r}.")
