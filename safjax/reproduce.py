"""The paper's CIFAR-10 job for every method, as one resumable sweep and one Markdown table.

`reproduce` runs ``experiments.train --config=image_folder_vgg11 --dataset=image_folder:<data>``
once per method (a `safjax.sweep` over ``method``, so a rerun skips finished methods and resumes
interrupted ones) and writes ``<workdir>/results.md``: per method the test accuracy, final
training loss, training time per epoch, examples/s, compiled peak memory and any not-learning
warning, under the command that made it.
"""

from __future__ import annotations

import datetime
import os
import shlex
from collections.abc import Callable, Sequence

from safjax import methods, run_outputs, sweep

PRESET = "image_folder_vgg11"
RESULTS_FILE = "results.md"


# The settings a method trains with here when the list names it alone; the others use their defaults.
DEFAULT_SPECS = {"tbptt": "tbptt:truncation=2:block_size=4",  # windows of 2 steps, two local blocks of VGG-11
                 "sltt_k": "sltt_k:backprop_steps=2"}  # the backward at 2 of the T = 6 steps


def method_list(text: str) -> list[str]:
    """``"saf_e,tbptt:truncation=3"`` → method specs (`safjax.methods.parse_spec`), validated;
    ``""`` → every registered method, with `DEFAULT_SPECS`."""
    specs = [name for name in text.split(",") if name] or [DEFAULT_SPECS.get(m, m) for m in methods.METHODS]
    unknown = [spec for spec in specs if spec.split(":")[0] not in methods.METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown {', '.join(unknown)}; valid: {', '.join(methods.METHODS)}.")
    for spec in specs:
        try:
            methods.parse_spec(spec)
        except ValueError as error:
            raise ValueError(f"--methods: {error}") from None
    return specs


def reproduce(data: str, workdir: str, epochs: int, method_names: Sequence[str],
              extra_flags: Sequence[str] = (), parallel: int = 1, runner: sweep.Runner | None = None,
              log: Callable[[str], None] = print) -> tuple[str, sweep.SweepOutcome]:
    """Train every method on the image folder ``data``; returns (the Markdown table, the sweep outcome)."""
    if not os.path.isdir(os.path.join(data, "train")):
        raise ValueError(f"--data={data!r} is invalid: expected the CIFAR-10 image folder root holding "
                         "train/<class>/ and test/<class>/ (tar xzf cifar10-jpeg.tar.gz).")
    if epochs < 1:
        raise ValueError(f"--epochs={epochs} is invalid: expected an integer ≥ 1.")
    base = [f"--config={PRESET}", f"--dataset=image_folder:{os.path.abspath(data)}",
            f"--epochs={epochs}", *extra_flags]
    outcome = sweep.run_sweep("method=" + ",".join(method_names), workdir, base, parallel,
                              runner=runner, log=log)
    arguments = [f"--data={data}", f"--workdir={workdir}", f"--epochs={epochs}",
                 f"--methods={','.join(method_names)}"] + (["--", *extra_flags] if extra_flags else [])
    command = " ".join(["python -m experiments.reproduce"] + [shlex.quote(a) for a in arguments])
    table = results_table(workdir, method_names, command)
    with open(os.path.join(workdir, RESULTS_FILE), "w") as f:
        f.write(table)
    log(f"reproduce: table written to {os.path.join(workdir, RESULTS_FILE)}")
    return table, outcome


def _mib(value) -> str:
    return f"{value / 2**20:.0f}" if value else "–"


def results_table(workdir: str, method_names: Sequence[str], command: str) -> str:
    """The Markdown table of the methods' results.json files under ``workdir`` (missing: 'not run')."""
    lines = [f"# CIFAR-10 ({PRESET}) per method", "", "```", command, "```", "",
             "| method | test accuracy | final train loss | s / epoch | examples / s | peak memory MiB | epochs | device | warnings |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in method_names:
        found = run_outputs.read_results(os.path.join(workdir, sweep.Cell((("method", name),)).name))
        if found is None:
            lines.append(f"| {name} | not run | | | | | | | |")
            continue
        per_epoch = sweep.time_per_epoch(found)
        speed = found.get("examples_per_second")
        lines.append(
            f"| {name} | {found['test_accuracy']:.4f} | {found['train_loss_history'][-1]:.4f} | "
            f"{per_epoch:.1f} | {speed:.0f} | {_mib(found.get('peak_memory_bytes'))} | "
            f"{found['epochs_completed']} | {found.get('device_kind', '?')} | "
            f"{'; '.join(found.get('warnings', [])) or '–'} |")
    lines += ["", f"Written {datetime.datetime.now().isoformat(timespec='seconds')}."]
    return "\n".join(lines) + "\n"
