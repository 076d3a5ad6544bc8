"""Adaptive LIF (ALIF) neurons as a pure step function over explicit state (docs/methods.md §1.6).

Each neuron carries, next to its membrane u and last spikes s, an adaptation variable b (a
(1 − ρ)-normalised running average of its own past spikes) that raises its threshold. With
u[0] = 0, s[0] = 0, b[0] = 0:

    b[t] = ρ·b[t−1] + (1 − ρ)·s[t−1]            adaptation variable
    A[t] = V_th + β·b[t]                         adaptive threshold
    u[t] = λ·(u[t−1] − V_th·s[t−1]) + I[t]       soft reset by the baseline V_th
    s[t] = H(u[t] − A[t])

The hard reset replaces the bracket by ``u[t−1]·(1 − s[t−1])``. The surrogate of §1.3 is evaluated
at z = u[t] − A[t], so under BPTT the gradient reaches both u and b (∂s/∂b = −β·h(z)). β = 0 is
exactly the LIF neuron of §1.2 (`safjax.neurons.lif`).

No identity of §1.5 holds for ALIF (its threshold is not fixed), so it has no capabilities:
SAF, OTTT and SR refuse it; BPTT, truncated BPTT and SLTT train it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from safjax import surrogates as surrogates_lib
from safjax.neurons.lif import RESET_MODES, integrate

Array = jax.Array


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class ALIFConfig:
    """Static ALIF configuration (hashable, a `jit` static argument; docs/methods.md §1.6).

    Attributes:
      leak: λ ∈ (0, 1], the per-step membrane decay (1.0: an adaptive IF neuron).
      threshold: V_th > 0, the baseline threshold, in units of the input current; also the amount
        the soft reset subtracts.
      adaptation: ρ ∈ [0, 1), the per-step decay of the adaptation variable b (0.9: a time
        constant of about 9.5 steps).
      adaptation_strength: β ≥ 0, how far b raises the threshold, A = V_th + β·b (0: LIF).
      reset: ``"soft"`` (subtract V_th) or ``"hard"`` (to 0).
      surrogate: pseudo-derivative of the Heaviside step, evaluated at u − A.
    """

    leak: float = 0.5
    threshold: float = 1.0
    adaptation: float = 0.9
    adaptation_strength: float = 1.8
    reset: str = "soft"
    surrogate: surrogates_lib.Surrogate = dataclasses.field(
        default_factory=surrogates_lib.sigmoid
    )

    def __post_init__(self):
        leak, threshold = self.leak, self.threshold
        rho, beta = self.adaptation, self.adaptation_strength
        if not (_is_number(leak) and 0.0 < leak <= 1.0):
            raise ValueError(
                f"ALIF: `leak` must lie in (0, 1] (λ = 1 − 1/τ; 1.0 is the adaptive IF neuron), got {leak!r}."
            )
        if not (_is_number(threshold) and threshold > 0):
            raise ValueError(f"ALIF: `threshold` must be a finite number > 0, got {threshold!r}.")
        if not (_is_number(rho) and 0.0 <= rho < 1.0):
            raise ValueError(
                f"ALIF: `adaptation` (ρ) must lie in [0, 1) (the per-step decay of the adaptation; "
                f"for no adaptation set adaptation_strength=0), got {rho!r}."
            )
        if not (_is_number(beta) and beta >= 0):
            raise ValueError(
                f"ALIF: `adaptation_strength` (β) must be a finite number ≥ 0 (0 is the LIF neuron), got {beta!r}."
            )
        if self.reset not in RESET_MODES:
            raise ValueError(f"ALIF: `reset` must be one of {RESET_MODES}, got {self.reset!r}.")
        if not isinstance(self.surrogate, surrogates_lib.Surrogate):
            raise ValueError(
                "ALIF: `surrogate` must be a safjax.surrogates.Surrogate, e.g. "
                f"safjax.surrogates.sigmoid(4.0); got {self.surrogate!r}."
            )
        for name, value in (("leak", leak), ("threshold", threshold), ("adaptation", rho),
                            ("adaptation_strength", beta)):
            object.__setattr__(self, name, float(value))

    # The neuron protocol (safjax.neurons.base).
    @property
    def capabilities(self) -> frozenset:
        """None: the adaptive threshold breaks the trace and accumulation identities (§1.6)."""
        return frozenset()

    def init_state(self, shape: tuple[int, ...], dtype=jnp.float32) -> "ALIFState":
        return init_alif_state(shape, dtype)

    def step(self, state: "ALIFState", current: Array, stop_state_gradient: bool = False):
        return alif_step(self, state, current, stop_state_gradient)

    def describe(self) -> str:
        reset = "" if self.reset == "soft" else f", reset={self.reset!r}"
        return f"ALIF(ρ={self.adaptation:g}, β={self.adaptation_strength:g}{reset})"


def alif(
    leak: float = 0.5,
    threshold: float = 1.0,
    adaptation: float = 0.9,
    adaptation_strength: float = 1.8,
    reset: str = "soft",
    surrogate: surrogates_lib.Surrogate | None = None,
) -> ALIFConfig:
    """An adaptive LIF neuron configuration (docs/methods.md §1.6; defaults: λ = 0.5, V_th = 1,
    ρ = 0.9, β = 1.8, soft reset, sigmoid surrogate with α = 4)."""
    return ALIFConfig(leak, threshold, adaptation, adaptation_strength, reset,
                      surrogate or surrogates_lib.sigmoid())


class ALIFState(NamedTuple):
    """State of one layer of ALIF neurons, every field [B, ...]."""

    v: Array  # membrane potential u[t]
    s: Array  # spikes s[t] ∈ {0, 1}
    b: Array  # adaptation variable b[t] ∈ [0, 1]; the threshold of step t was V_th + β·b[t]


def init_alif_state(shape: tuple[int, ...], dtype=jnp.float32) -> ALIFState:
    """u[0] = 0, s[0] = 0, b[0] = 0 for a layer of per-batch shape ``shape`` (``[B, ...]``)."""
    return ALIFState(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def alif_step(
    config: ALIFConfig, state: ALIFState, current: Array, stop_state_gradient: bool = False
) -> tuple[ALIFState, Array]:
    """One ALIF step (docs/methods.md §1.6): ``(state[t−1], I[t]) -> (state[t], s[t])``, all ``[B, ...]``.

    ``stop_state_gradient`` detaches u[t−1], s[t−1] and b[t−1], so the only gradient path left is
    the spatial one, I[t] → s[t] (OTTT's and SLTT's "temporal paths detached").
    """
    v, s, b = state
    if stop_state_gradient:
        v, s, b = jax.lax.stop_gradient((v, s, b))
    b = config.adaptation * b + (1.0 - config.adaptation) * s
    v = integrate(v, s, current, config.leak, config.threshold, config.reset)
    s = config.surrogate(v - (config.threshold + config.adaptation_strength * b))
    return ALIFState(v, s, b), s
