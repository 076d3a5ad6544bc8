"""Take a trained run out of safjax: its network as a NIR file, with what that costs in accuracy and
what one inference costs in synaptic operations (docs/deploy.md). `experiments/export.py` is the
command-line front end.

`export_run` reads a run's workdir (config.json, the newest checkpoint), and on the run's test set
measures

- the inference conversion (docs/methods.md §4.7): the accuracy of the trained parameters in the
  run's own training-mode forward (SAF's accumulations for saf_e/saf_f) against the
  spike-propagating LIF net they run in (SAF-compatible networks; for the others the two are the
  same net);
- the exported graph: written with `safjax.nir.export`, read back with `nir.read`, imported with
  `safjax.nir.to_network` and evaluated — equal to the LIF net for a hard-reset network, and, for
  the approximate export of a soft-reset one (``reset="zero"``), the accuracy change it costs;
- the synaptic operations and energy estimate of one inference (`safjax.energy`).
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from safjax import data_loader, energy, experiment_config, input_pipeline, inference, run_record, simulate, trainer
from safjax import network as network_lib
from safjax import nir as nir_lib
from safjax.checkpoints import Checkpointer


def load_run(workdir: str):
    """(config, train set, test set, network, network params) of the newest checkpoint in ``workdir``."""
    stored = run_record.load(workdir)
    if stored is None:
        raise ValueError(f"--workdir={workdir} holds no run (no readable {run_record.CONFIG_FILE} or results.json): "
                         "pass the --workdir of a training run.")
    values = {k: v for k, v in stored.items() if k not in ("devices", "num_processes")}
    config = experiment_config.from_flags(values)
    train_set, test_set = trainer._load_data(config)
    setup = trainer.initial_state(config, train_set)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        restored = checkpointer.restore_latest({"params": setup.params, "opt_state": setup.opt_state}, log=lambda _: None)
    finally:
        checkpointer.close()
    if restored is None:
        raise ValueError(f"--workdir={workdir} holds no readable checkpoint: train the run first.")
    step, state, _ = restored
    return config, train_set, test_set, setup.net, setup.method.network_params(state["params"]), step


def accuracy(forward: Callable, params, test_set, time_steps: int, batch_size: int = 256) -> float:
    """Test accuracy of ``forward(params, inputs [T, B, ...]) -> outputs [T, B, C]`` (prediction =
    argmax Σ_t o[t]) over every example of ``test_set``, on the default device."""
    to_time_major = trainer._time_major(test_set.temporal, time_steps)

    @jax.jit
    def correct(params, inputs, labels, valid):
        outputs = forward(params, to_time_major(inputs))
        return jnp.sum((jnp.argmax(outputs.sum(0), -1) == labels) & valid)

    total, skipped = 0, []
    for inputs, labels, num_valid in data_loader.eval_batches(test_set, batch_size, skipped=skipped):
        valid = np.arange(len(labels)) < num_valid
        total += int(correct(params, jnp.asarray(inputs), jnp.asarray(labels), jnp.asarray(valid)))
    if skipped:  # only with the run's --skip_bad_examples (test_set.skip_bad); otherwise they raise
        print(f"note: {len(set(skipped))} unreadable test example(s) replaced by the next one "
              f"(--skip_bad_examples), e.g. {skipped[0]}")
    return total / len(test_set)


def _saf_compatible(net) -> bool:
    try:
        inference.saf.validate(net, "conversion")
    except ValueError:
        return False
    return True


def snntorch_agreement(graph, net, params, test_set, time_steps: int, examples: int = 0) -> dict:
    """Run ``graph`` in snnTorch (``snntorch.import_nir.import_from_nir``; needs torch and snntorch)
    on the first ``examples`` test examples (0 = all), one unbatched example at a time (C·H·W), and
    compare its predictions (argmax Σ_t o[t]) with the safjax spiking net ``net``'s."""
    try:
        import torch
        from snntorch.import_nir import import_from_nir
    except ImportError as error:
        raise ImportError(f"the snnTorch cross-check needs torch and snntorch ({error}); pip install snntorch "
                          "nirtorch torch.") from None
    count = len(test_set) if examples <= 0 else min(examples, len(test_set))
    to_time_major = trainer._time_major(test_set.temporal, time_steps)
    inputs = np.asarray(to_time_major(jnp.asarray(input_pipeline.make_batch(
        test_set, np.arange(count), augment=False, seed=0, epoch=0, step=0)[0])), np.float32)  # [T, N, ...]
    ours = np.asarray(simulate.run(net, params, jnp.asarray(inputs))[0]).sum(0)  # [N, C]
    module = import_from_nir(graph)
    theirs = []
    with torch.no_grad():
        for i in range(count):
            state, total = None, 0.0
            for x_t in inputs[:, i]:
                x_t = np.ascontiguousarray(x_t.transpose(2, 0, 1) if x_t.ndim == 3 else x_t)  # NIR: C·H·W
                out, state = module(torch.from_numpy(x_t), state)
                total = total + out.numpy()
            theirs.append(total)
    theirs = np.stack(theirs)
    return {"examples": count, "prediction_agreement": float(np.mean(theirs.argmax(-1) == ours.argmax(-1))),
            "max_abs_output_difference": float(np.max(np.abs(theirs - ours)))}


def run_summary(config, step: int, num_train_examples: int) -> str:
    """What the export reads, in words: method, data, model, seed, lr, T and how far the run
    got, e.g. ``saf_e on digits, model digits_mlp, seed 0, lr 0.001, T=4, checkpoint at minibatch
    10 of 48 (unfinished)``."""
    total = config.epochs * (num_train_examples // config.batch_size)
    progress = f"checkpoint at minibatch {step} of {total}" + (" (unfinished)" if step < total else "")
    return (f"{config.method} on {config.dataset}, model {config.model_name}, seed {config.seed}, "
            f"lr {config.learning_rate:g}, T={config.time_steps}, {progress}")


def _training_forward(config, net) -> Callable:
    """``forward(params, inputs [T, B, ...]) -> o [T, B, C]`` of the run's own method in training
    mode (SAF's accumulations for saf_e/saf_f, OTTT's two evaluations, the spiking net for BPTT)."""
    method = config.build_method()

    def forward(params, inputs):
        labels = jnp.zeros(inputs.shape[1], jnp.int32)  # a forward's loss needs labels; its outputs do not
        return method.forward(net, params, inputs, labels)

    return forward


def export_run(workdir: str, output: str, *, reset: str = "refuse", dt: float = nir_lib.DEFAULT_DT,
               discretisation: str = "euler", fold_scales: bool = True, batch_size: int = 256,
               cross_check_examples: int = -1, log: Callable[[str], None] = print) -> dict:
    """Export the run in ``workdir`` to the NIR file ``output`` and measure it (see the module
    docstring); returns the figures it printed. ``cross_check_examples`` ≥ 0 also runs the exported
    graph in snnTorch on that many test examples (0 = all) and reports the agreement."""
    config, train_set, test_set, net, params, step = load_run(workdir)
    if not isinstance(net, network_lib.Network):
        raise ValueError(f"--workdir={workdir} holds a run of --model={config.model_name}, a plain Flax model "
                         "(arbitrary code): NIR export needs an nn.Sequential model, whose layers map to NIR nodes.")
    log(f"{workdir}: {run_summary(config, step, len(train_set))}; {len(test_set)} test examples")
    lif = lambda p, x: simulate.run(net, p, x)[0]  # noqa: E731
    report = {"workdir": workdir, "output": output, "checkpoint_step": step}
    report["lif_accuracy"] = accuracy(lif, params, test_set, config.time_steps, batch_size)
    if _saf_compatible(net):
        report["training_mode_accuracy"] = accuracy(_training_forward(config, net), params, test_set,
                                                    config.time_steps, batch_size)
        log(f"conversion (docs/methods.md §4.7): training-mode ({config.method}) accuracy "
            f"{report['training_mode_accuracy']:.4f} → spiking LIF net {report['lif_accuracy']:.4f} "
            f"({100 * (report['lif_accuracy'] - report['training_mode_accuracy']):+.2f} points)")
    else:
        log(f"spiking LIF net accuracy {report['lif_accuracy']:.4f} (trained and run as the same net: no conversion)")
    exported = nir_lib.export(net, params, reset=reset, dt=dt, discretisation=discretisation, fold_scales=fold_scales)
    nir_lib.write(output, exported.graph)
    for line in exported.folded:
        log(f"  folded {line}")
    for line in exported.approximations:
        log(f"  approximation: {line}")
    imported_net, imported_params = nir_lib.to_network(nir_lib.read(output))
    report["exported_accuracy"] = accuracy(lambda p, x: simulate.run(imported_net, p, x)[0], imported_params,
                                           test_set, config.time_steps, batch_size)
    report.update(node_count=exported.node_count, folded=exported.folded, approximations=exported.approximations)
    change = 100 * (report["exported_accuracy"] - report["lif_accuracy"])
    kind = "approximate (reset to 0)" if exported.approximations else "exact"
    log(f"wrote {output}: {exported.node_count} NIR nodes, {kind}; read back and run: accuracy "
        f"{report['lif_accuracy']:.4f} → {report['exported_accuracy']:.4f} ({change:+.2f} points)")
    if cross_check_examples >= 0:
        check = snntorch_agreement(nir_lib.read(output), imported_net, imported_params, test_set, config.time_steps,
                                   cross_check_examples)
        report["snntorch"] = check
        log(f"snnTorch runs {output} on {check['examples']} test examples: predictions agree with safjax's on "
            f"{100 * check['prediction_agreement']:.2f} %, outputs differ by ≤ {check['max_abs_output_difference']:.2e}")
    to_time_major = trainer._time_major(test_set.temporal, config.time_steps)
    operations = trainer.test_set_operations(net, params, test_set, to_time_major, batch_size)
    report.update(synaptic_operations=operations, energy_estimate=energy.energy(operations))
    log("synaptic operations per inference on the test set:\n" + energy.format_table(operations))
    return report
