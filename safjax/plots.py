"""Figures people would rather look at than read: benchmark curves, a run's training and firing
rate curves, spike rasters, and a sweep's accuracy against T."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def curves_by_group(records: list[dict], path: str, *, group: str, x: str, xlabel: str,
                    panels: list[tuple], title: str = "", label: str = "{}") -> None:
    """Side-by-side panels, one line per value of ``records[i][group]`` against ``x`` on a log₂
    axis; ``panels`` = [(y(record) → float, ylabel, panel title), ...]. Saved as a PNG."""
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 4), squeeze=False)
    for value in dict.fromkeys(r[group] for r in records):
        rows = sorted((r for r in records if r[group] == value), key=lambda r: r[x])
        for ax, (y, _, _) in zip(axes[0], panels):
            ax.plot([r[x] for r in rows], [y(r) for r in rows], marker="o", label=label.format(value))
    for ax, (_, ylabel, panel_title) in zip(axes[0], panels):
        ax.set(xlabel=xlabel, ylabel=ylabel, title=panel_title)
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def benchmark_curves(records: list[dict], path: str, title: str = "") -> None:
    """Temp memory (MB) and step time (ms) against T, one line per method, saved as a PNG."""
    curves_by_group(records, path, group="method", x="time_steps", xlabel="time steps T", title=title, panels=[
        (lambda r: r["temp_bytes"] / 1e6, "XLA temp memory (MB)", "memory per minibatch"),
        (lambda r: r["step_time_ms"], "median step time (ms)", "time per minibatch"),
    ])


_DPI = 100  # figure sizes below are in inches; pixels = inches × 100


def _save(fig, path: str) -> None:
    fig.savefig(path, dpi=_DPI)  # no bbox_inches="tight": the pixel size stays as documented
    plt.close(fig)


def _check_history(history: list[dict], keys: tuple[str, ...]) -> None:
    if not history:
        raise ValueError("`history` is empty: expected one dict per epoch (the lines of metrics.jsonl).")
    for i, entry in enumerate(history):
        missing = [k for k in keys if k not in entry]
        if missing:
            raise ValueError(f"`history[{i}]` lacks {', '.join(missing)}: expected the keys {', '.join(keys)}.")


def training_curves(history: list[dict], path: str, title: str = "") -> None:
    """Train loss and test accuracy per epoch, two panels, as a 10 × 4 in PNG.

    Args:
      history: one dict per epoch with ``epoch``, ``train_loss`` and ``test_accuracy`` (in 0–1):
        the lines of a run's ``metrics.jsonl``.
    """
    _check_history(history, ("epoch", "train_loss", "test_accuracy"))
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o")
    accuracy_ax.plot(epochs, [100 * h["test_accuracy"] for h in history], marker="o", color="C1")
    loss_ax.set(xlabel="epoch", ylabel="train loss", title="training loss (epoch mean)")
    accuracy_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    for ax in (loss_ax, accuracy_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def firing_rate_curves(history: list[dict], path: str, layer_names: list[str] | None = None,
                       title: str = "") -> None:
    """Mean firing rate of each spiking layer per epoch, one line per layer, as an 8 × 4 in PNG.

    Args:
      history: one dict per epoch with ``epoch`` and ``firing_rates`` (one mean rate per spiking
        layer, the same number every epoch): the lines of ``metrics.jsonl``.
      layer_names: legend labels, one per layer (default ``layer 1``, ``layer 2``, …).
    """
    _check_history(history, ("epoch", "firing_rates"))
    num_layers = len(history[0]["firing_rates"])
    if num_layers == 0 or any(len(h["firing_rates"]) != num_layers for h in history):
        raise ValueError("`history`: every epoch needs the same, non-zero number of firing_rates, got "
                         f"{sorted({len(h['firing_rates']) for h in history})}.")
    if layer_names is None:
        layer_names = [f"layer {i + 1}" for i in range(num_layers)]
    elif len(layer_names) != num_layers:
        raise ValueError(f"`layer_names` has {len(layer_names)} names for {num_layers} layers.")
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, name in enumerate(layer_names):
        ax.plot(epochs, [h["firing_rates"][i] for h in history], marker="o", label=name)
    ax.set(xlabel="epoch", ylabel="mean firing rate (spikes / neuron / step)",
           title=title or "firing rate per spiking layer")
    ax.set_ylim(bottom=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def spike_raster(spikes, path: str, title: str = "", max_neurons: int = 128,
                 layer_names: list[str] | None = None) -> None:
    """Spike rasters of one example, one panel per spiking layer (time on x, neuron on y).

    The PNG is 8 in wide and 1 + 2·L in tall for L layers. A layer wider than ``max_neurons`` shows
    ``max_neurons`` evenly spaced neurons, drawn at rows 0 … k − 1 (the y axis counts the k shown,
    labelled ``neuron (k of N sampled)``), and its panel title says so. Each spike is a marker.

    Args:
      spikes: a list with one ``[T, N]`` array of 0/1 per spiking layer (flatten convolutional
        maps to ``[T, C·H·W]`` first); T must agree across layers.
      layer_names: one panel label per layer (default ``layer 1``, ``layer 2``, …).
    """
    if isinstance(spikes, np.ndarray) or not isinstance(spikes, (list, tuple)) or not spikes:
        raise ValueError("`spikes` must be a non-empty list with one [T, N] array per spiking layer.")
    spikes = [np.asarray(s) for s in spikes]
    for i, s in enumerate(spikes):
        if s.ndim != 2 or 0 in s.shape:
            raise ValueError(f"`spikes[{i}]` must be a non-empty [T, N] array, got shape {s.shape}.")
    if len({s.shape[0] for s in spikes}) > 1:
        raise ValueError(f"`spikes`: the layers disagree on T: {[s.shape[0] for s in spikes]}.")
    if layer_names is not None and len(layer_names) != len(spikes):
        raise ValueError(f"`layer_names` has {len(layer_names)} names for {len(spikes)} layers.")
    num_steps = spikes[0].shape[0]
    # constrained layout keeps the figure title clear of the first panel's title at any depth.
    fig, axes = plt.subplots(len(spikes), 1, figsize=(8, 1 + 2 * len(spikes)), sharex=True, squeeze=False,
                             layout="constrained")
    for i, (ax, s) in enumerate(zip(axes[:, 0], spikes)):
        width = s.shape[1]
        shown = np.unique(np.linspace(0, width - 1, min(width, max_neurons)).round().astype(int))
        steps, rows = np.nonzero(s[:, shown])
        # Markers about a row high (~110 pt of panel over the rows shown), never below 2 pt.
        size = max(2.0, min(6.0, 110.0 / len(shown)))
        ax.plot(steps, rows, linestyle="none", marker="s", markersize=size, color="black")
        ax.set_xlim(-0.5, num_steps - 0.5)
        ax.set_ylim(-0.5, len(shown) - 0.5)
        subset = f", {len(shown)} of {width} neurons shown" if len(shown) < width else ""
        name = layer_names[i] if layer_names is not None else f"layer {i + 1}"
        ax.set_title(f"{name}: {width} neurons, rate {float(np.mean(s != 0)):.3f}{subset}",
                     fontsize=9)
        ax.set_ylabel(f"neuron ({len(shown)} of {width} sampled)" if subset else "neuron", fontsize=8)
    axes[-1, 0].set_xlabel("time step t")
    axes[-1, 0].xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def sweep_comparison(rows: list[dict], path: str, series_keys: tuple[str, ...] = ("method",),
                     title: str = "") -> None:
    """Test accuracy (mean ± std over seeds) against T, one line per series, as an 8 × 5 in PNG.

    With a single value of T (or no ``time_steps`` in the rows) it draws one bar per series.

    Args:
      rows: one dict per configuration with ``accuracy_mean`` and ``accuracy_std`` (in 0–1),
        ``time_steps`` and the ``series_keys``: the rows of `safjax.sweep.summarize`.
      series_keys: the keys whose values tell the lines apart (their values form the legend).
    """
    if not rows:
        raise ValueError("`rows` is empty: expected one dict per configuration.")
    needed = ("accuracy_mean", "accuracy_std", *series_keys)
    for i, row in enumerate(rows):
        missing = [k for k in needed if k not in row]
        if missing:
            raise ValueError(f"`rows[{i}]` lacks {', '.join(missing)}.")
    series: dict[str, list[dict]] = {}
    for row in rows:
        series.setdefault(_series_label(row, series_keys), []).append(row)
    steps = {row.get("time_steps") for row in rows}
    if len(steps) > 1 and None in steps:
        raise ValueError("`rows`: some rows lack time_steps while others differ in it.")
    fig, ax = plt.subplots(figsize=(8, 5))
    if len(steps) == 1:
        labels = list(series)
        for label, group in series.items():
            if len(group) > 1:
                raise ValueError(f"`rows`: {len(group)} rows for {label!r}; add the key that differs "
                                 "to `series_keys`.")
        means = [100 * group[0]["accuracy_mean"] for group in series.values()]
        stds = [100 * group[0]["accuracy_std"] for group in series.values()]
        bars = ax.bar(range(len(labels)), means, yerr=stds, capsize=4,
                      color=[f"C{i % 10}" for i in range(len(labels))])
        ax.bar_label(bars, [f"{m:.1f} ± {s:.1f}" for m, s in zip(means, stds)], padding=3, fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 4 else 0, fontsize=8)
        ax.set_axisbelow(True)
        (only,) = steps
        steps_note = "" if only is None else f"T = {only}"
        if title and steps_note:
            steps_note = f"{title}, {steps_note}"
        ax.set(ylabel="test accuracy (%)", title=steps_note or title)
    else:
        for label, group in series.items():
            group = sorted(group, key=lambda r: r["time_steps"])
            xs = [r["time_steps"] for r in group]
            if len(set(xs)) < len(xs):
                raise ValueError(f"`rows`: two rows for {label!r} at the same time_steps; add the key "
                                 "that differs to `series_keys`.")
            ax.errorbar(xs, [100 * r["accuracy_mean"] for r in group],
                        yerr=[100 * r["accuracy_std"] for r in group], marker="o", capsize=3, label=label)
        ticks = sorted(steps)
        if ticks[0] > 0 and ticks[-1] >= 4 * ticks[0]:
            ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set(xlabel="time steps T", ylabel="test accuracy (%)", title=title)
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def _series_label(row: dict, keys: tuple[str, ...]) -> str:
    if len(keys) == 1:
        return str(row[keys[0]])
    return ", ".join(f"{k}={row[k]}" for k in keys) or "all"
