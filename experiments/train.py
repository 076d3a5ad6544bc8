"""Train a spiking network with any safjax method. With no flags: SAF-E on the embedded digits.

    python -m experiments.train --method=bptt --time_steps=8
    python -m experiments.train --config=cifar10_vgg11 --data_dir=~/tensorflow_datasets

Every field of `safjax.experiment_config.ExperimentConfig` is a flag, and so is every setting of every
method (e.g. ``--truncation`` of tbptt, ``--remat`` of bptt); ``--config`` picks a preset from
`experiments.presets`, and flags given explicitly override it.
"""

import time

_STARTED = time.time()  # before the heavy imports: the final line's wall time includes start-up

import dataclasses  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from experiments import method_flags, presets  # noqa: E402
from safjax import datasets, experiment_config, methods, models, neurons, run_outputs  # noqa: E402
from safjax.data_loader import DataWorkerError  # noqa: E402

FLAGS = flags.FLAGS
_REGISTERED = {"methods": ", ".join(methods.METHODS), "datasets": ", ".join(datasets.LOADERS),
               "models": ", ".join(models.MODELS), "neurons": ", ".join(neurons.NEURONS)}
_FIELDS = [f for f in dataclasses.fields(experiment_config.ExperimentConfig) if f.name != "method_settings"]
for _field in _FIELDS:
    method_flags.DEFINE_BY_TYPE[type(_field.default)](_field.name, _field.default, _field.metadata["help"].format(**_REGISTERED))
_SETTINGS = method_flags.define()  # every method factory's settings: one flag each, for the methods that take it
flags.adopt_module_key_flags(method_flags)  # listed by --help with this binary's own flags
flags.DEFINE_bool("distributed", False, "Multi-host: call jax.distributed.initialize() first; each "
                  "process then feeds its own rows of every global minibatch.")
flags.DEFINE_string("coordinator_address", "", "--distributed: host:port of process 0 ('' = detect "
                    "from the cluster environment, e.g. SLURM).")
flags.DEFINE_integer("num_processes", 0, "--distributed: number of processes (0 = detect).")
flags.DEFINE_integer("process_id", -1, "--distributed: this process's index (-1 = detect).")
flags.DEFINE_integer("distributed_timeout", 300, "--distributed: seconds to wait for every process to "
                     "join before giving up in one line.", lower_bound=1)
flags.DEFINE_bool("restart", False, "Delete the run already in --workdir (checkpoints, metrics, results, "
                  "plots) and train from scratch. Without it, a rerun continues the run stored there and "
                  "refuses settings that would change its results (see safjax/run_record.py).")
flags.DEFINE_string("config", "", f"Preset: {', '.join(presets.PRESETS)} (explicit flags override it).")


def config_from_flags() -> experiment_config.ExperimentConfig:
    """Preset values, then every flag set on the command line."""
    fields = {f.name: FLAGS[f.name].value for f in _FIELDS if FLAGS[f.name].present}
    return presets.resolve(FLAGS.config, {**fields, **method_flags.given(_SETTINGS)})


def initialize_distributed() -> None:
    """`jax.distributed.initialize` with --distributed_timeout. When a process never joins, JAX
    aborts the process (SIGABRT, a C++ stack trace) once its own timeout passes, which Python
    cannot catch: a watchdog ends the process first, with one line, and JAX gets a longer timeout."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts; no-op on GPU
    timeout = FLAGS.distributed_timeout
    where = FLAGS.coordinator_address or "the coordinator from the cluster environment"

    def give_up():
        print(f"error: --distributed: not every process joined {where} within --distributed_timeout="
              f"{timeout} s: start all --num_processes processes with the same --coordinator_address "
              "(reachable from each host), or raise --distributed_timeout.", file=sys.stderr, flush=True)
        os._exit(1)

    print(f"--distributed: waiting up to {timeout} s for every process to join {where} …", flush=True)
    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(FLAGS.coordinator_address or None, FLAGS.num_processes or None,
                                   None if FLAGS.process_id < 0 else FLAGS.process_id,
                                   initialization_timeout=timeout + 30)
    finally:
        watchdog.cancel()


def main(argv):
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep orbax's per-save INFO lines out of the progress
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}; flags are written --name=value.")
    try:
        if FLAGS.distributed:
            initialize_distributed()
        from safjax import trainer

        trainer.train_and_evaluate(config_from_flags(), restart=FLAGS.restart, started=_STARTED)
    except (ValueError, FileNotFoundError, FloatingPointError, ImportError, run_outputs.DiskFullError,
            DataWorkerError) as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt as error:  # Ctrl-C: the trainer's line says where the run can resume
        message = error.args[0] if error.args else "interrupted; rerun the same command to resume."
        print(("\n" if sys.stderr.isatty() else "") + message, file=sys.stderr)  # after the ^C echo
        sys.exit(130)


if __name__ == "__main__":
    app.run(main)
