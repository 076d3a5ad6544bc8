"""Test-wide settings: float64, so that exact identities are checked to ~1e-12, and four forced
CPU devices for the data-parallel tests (set before JAX initialises its backends).

This test process also compiles with XLA's backend (LLVM) optimisation level 0: the suite compiles
hundreds of small programs and runs each only a few times, and level 0 roughly halves a CPU
compile. It changes neither XLA's HLO passes (so not the buffer assignment that the memory tests
read) nor what the programs compute. Subprocesses the tests launch (`experiments.train`, ...)
inherit only the device count, so they run as a user's would.

The default run spreads the test files over two pytest-xdist workers (setup.cfg: ``-n 2 --dist
loadfile``; ``-n 0`` runs them in this process). Each worker imports this file afresh, so each
has the settings above. A file's tests all go to one worker, so a module-scoped fixture (a training
run, a prepared data set, runs started ahead by `background`) is built once, not once per worker.
"""

import collections
import os

_DEVICES = "--xla_force_host_platform_device_count=4"
_FAST_COMPILE = "--xla_backend_optimization_level=0"
# An xdist worker inherits the flags its controller (which imported this file first) hands to
# subprocesses: ours are dropped from the user's, so that none is doubled.
_USER_FLAGS = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if f not in (_DEVICES, _FAST_COMPILE))

os.environ["XLA_FLAGS"] = f"{_USER_FLAGS} {_DEVICES} {_FAST_COMPILE}".strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.devices()  # initialise the CPU backend now, with the flags above ...
os.environ["XLA_FLAGS"] = f"{_USER_FLAGS} {_DEVICES}".strip()  # ... and hand subprocesses the devices only


# The slow run's longest files (real-data learning: tens of minutes each in one worker, since
# --dist loadfile keeps a file together) start first, side by side on the two workers, and the other
# files fill in around them; pytest-xdist's own order (most tests first, setup.cfg turns it off with
# --no-loadscope-reorder) started them last and left one worker idle for half an hour.
_LONGEST_FIRST = ("test_resnets.py", "test_learning_real_data.py")


def pytest_collection_modifyitems(config, items):
    tests_per_file = collections.Counter(item.path.name for item in items)

    def order(item):
        name = item.path.name
        return (_LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST),
                -tests_per_file[name])

    items.sort(key=order)
