"""LIF and IF neurons as pure step functions over explicit state (docs/methods.md §1.2).

Soft (subtractive) reset, the default, with u[0] = 0 and s[0] = 0:

    u[t] = λ (u[t-1] − V_th s[t-1]) + I[t]
    s[t] = H(u[t] − V_th)

Hard reset replaces the bracket by ``u[t-1] (1 − s[t-1])``. ``detach_reset`` stops the gradient
through the reset term (BPTT only). IF is LIF with λ = 1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from safjax import surrogates as surrogates_lib
from safjax.neurons import base

Array = jax.Array

RESET_MODES = ("soft", "hard")


@dataclasses.dataclass(frozen=True)
class LIFConfig:
    """Static neuron configuration (hashable, a `jit` static argument).

    Attributes:
      leak: λ ∈ (0, 1], the per-step membrane decay (λ = 1 − 1/τ; 1.0 is the IF neuron).
      threshold: V_th > 0, in units of the input current.
      reset: ``"soft"`` (subtract V_th) or ``"hard"`` (to 0).
      detach_reset: stop the gradient through the reset term (BPTT only).
      surrogate: pseudo-derivative of the Heaviside step.
    """

    leak: float = 0.5
    threshold: float = 1.0
    reset: str = "soft"
    detach_reset: bool = False
    surrogate: surrogates_lib.Surrogate = dataclasses.field(
        default_factory=surrogates_lib.sigmoid
    )

    def __post_init__(self):
        leak, threshold = self.leak, self.threshold
        if not (isinstance(leak, (int, float)) and math.isfinite(leak) and 0.0 < leak <= 1.0):
            raise ValueError(
                f"`leak` must lie in (0, 1] (λ = 1 − 1/τ; 1.0 is the IF neuron), got {leak!r}."
            )
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"`threshold` must be a finite number > 0, got {threshold!r}.")
        if self.reset not in RESET_MODES:
            raise ValueError(f"`reset` must be one of {RESET_MODES}, got {self.reset!r}.")
        if not isinstance(self.surrogate, surrogates_lib.Surrogate):
            raise ValueError(
                "`surrogate` must be a safjax.surrogates.Surrogate, e.g. "
                f"safjax.surrogates.sigmoid(4.0); got {self.surrogate!r}."
            )
        object.__setattr__(self, "leak", float(leak))
        object.__setattr__(self, "threshold", float(threshold))

    # The neuron protocol (safjax.neurons.base).
    @property
    def capabilities(self) -> frozenset:
        """Traces always (fixed V_th, one λ); the accumulation identity with the soft reset only."""
        if self.reset == "soft":
            return frozenset({base.TRACES, base.ACCUMULATION})
        return frozenset({base.TRACES})

    def init_state(self, shape: tuple[int, ...], dtype=jnp.float32) -> "LIFState":
        return init_lif_state(shape, dtype)

    def step(self, state: "LIFState", current: Array, stop_state_gradient: bool = False):
        return lif_step(self, state, current, stop_state_gradient)

    def describe(self) -> str:
        kind = "IF" if self.leak == 1.0 else "LIF"
        return f"{kind}(reset={self.reset!r})"


def lif(
    leak: float = 0.5,
    threshold: float = 1.0,
    reset: str = "soft",
    detach_reset: bool = False,
    surrogate: surrogates_lib.Surrogate | None = None,
) -> LIFConfig:
    """A leaky integrate-and-fire neuron configuration (defaults: τ = 2 → λ = 0.5, V_th = 1)."""
    return LIFConfig(leak, threshold, reset, detach_reset, surrogate or surrogates_lib.sigmoid())


def integrate_and_fire(
    threshold: float = 1.0,
    reset: str = "soft",
    detach_reset: bool = False,
    surrogate: surrogates_lib.Surrogate | None = None,
) -> LIFConfig:
    """An integrate-and-fire neuron: LIF with λ = 1."""
    return lif(1.0, threshold, reset, detach_reset, surrogate)


class LIFState(NamedTuple):
    """Membrane state of one layer of LIF neurons."""

    v: Array  # [B, ...] membrane potential u[t]
    s: Array  # [B, ...] spikes s[t] ∈ {0, 1}


def init_lif_state(shape: tuple[int, ...], dtype=jnp.float32) -> LIFState:
    """u[0] = 0, s[0] = 0 for a layer of per-batch shape ``shape`` (``[B, ...]``)."""
    return LIFState(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def lif_step(
    config: LIFConfig, state: LIFState, current: Array, stop_state_gradient: bool = False
) -> tuple[LIFState, Array]:
    """One LIF step: ``(state[t-1], I[t]) -> (state[t], s[t])``, all ``[B, ...]``.

    ``stop_state_gradient`` detaches u[t-1] and s[t-1] (OTTT's spatial-only gradient).
    """
    v, s = state
    if stop_state_gradient:
        v, s = jax.lax.stop_gradient(v), jax.lax.stop_gradient(s)
    reset_s = jax.lax.stop_gradient(s) if config.detach_reset else s
    v = integrate(v, reset_s, current, config.leak, config.threshold, config.reset)
    s = config.surrogate(v - config.threshold)
    return LIFState(v, s), s


def integrate(v: Array, s: Array, current: Array, leak: float, threshold: float, reset: str) -> Array:
    """The membrane update u[t] = λ·(u[t−1] after its reset by s[t−1]) + I[t] (docs/methods.md §1.2),
    all ``[B, ...]``: the soft reset subtracts V_th·s, the hard one multiplies by 1 − s. LIF's and
    ALIF's (§1.6) step share it."""
    if reset == "soft":
        v_after_reset = v - threshold * s
    else:
        v_after_reset = v * (1.0 - s)
    return leak * v_after_reset + current
