"""Static training configuration shared by all methods (hashable: a `jit` static argument)."""

from __future__ import annotations

import dataclasses

WINDOW_MODES = ("update", "accumulate")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a method trains one minibatch.

    Attributes:
      mse_weight: γ of the loss (1 − γ)·CE + γ·MSE (docs/methods.md §1; 0.05 on CIFAR, 0 → pure CE).
      unroll: `lax.scan`'s ``unroll`` for the time loop (1 = rolled loop, True = fully unrolled).
      remat: BPTT only — rematerialise each time step in the backward pass (`jax.checkpoint`).
      truncation: TBPTT only — window length K (None → K = T, which is BPTT).
      window_mode: TBPTT only — ``"update"`` after each window or ``"accumulate"`` over windows.
      block_size: TBPTT only — local blocks of B spiking layers, each but the last ending in an
        auxiliary classifier and trained by its own loss (docs/methods.md §7; None → one block, global
        training; B ≥ the number of layers is also one block).
    """

    mse_weight: float = 0.05
    unroll: int | bool = 1
    remat: bool = False
    truncation: int | None = None
    window_mode: str = "update"
    block_size: int | None = None

    def __post_init__(self):
        if not 0.0 <= self.mse_weight <= 1.0:
            raise ValueError(f"`mse_weight` must lie in [0, 1], got {self.mse_weight!r}.")
        if not (self.unroll is True or (isinstance(self.unroll, int) and self.unroll >= 1)):
            raise ValueError(f"`unroll` must be True or an int ≥ 1, got {self.unroll!r}.")
        if self.truncation is not None and not (
            isinstance(self.truncation, int) and self.truncation >= 1
        ):
            raise ValueError(f"`truncation` must be None or an int ≥ 1, got {self.truncation!r}.")
        if self.block_size is not None and not (
            isinstance(self.block_size, int)
            and not isinstance(self.block_size, bool)
            and self.block_size >= 1
        ):
            raise ValueError(f"`block_size` must be None or an int ≥ 1, got {self.block_size!r}.")
        if self.window_mode not in WINDOW_MODES:
            raise ValueError(f"`window_mode` must be one of {WINDOW_MODES}, got {self.window_mode!r}.")


def window_length(truncation: int | None, num_steps: int) -> int:
    """TBPTT's window K for ``num_steps`` = T: ``truncation`` clamped to T, None meaning K = T."""
    return min(truncation or num_steps, num_steps)
