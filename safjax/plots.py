"""Figures people would rather look at than read: benchmark curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def benchmark_curves(records: list[dict], path: str, title: str = "") -> None:
    """Temp memory (MB) and step time (ms) against T, one line per method, saved as a PNG."""
    fig, (memory_ax, time_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for method in dict.fromkeys(r["method"] for r in records):
        rows = sorted((r for r in records if r["method"] == method), key=lambda r: r["time_steps"])
        steps = [r["time_steps"] for r in rows]
        memory_ax.plot(steps, [r["temp_bytes"] / 1e6 for r in rows], marker="o", label=method)
        time_ax.plot(steps, [r["step_time_ms"] for r in rows], marker="o", label=method)
    memory_ax.set(xlabel="time steps T", ylabel="XLA temp memory (MB)", title="memory per minibatch")
    time_ax.set(xlabel="time steps T", ylabel="median step time (ms)", title="time per minibatch")
    for ax in (memory_ax, time_ax):
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    time_ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
