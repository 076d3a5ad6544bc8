"""Runs of the binaries started ahead of the tests that read them.

A run of `experiments.train` is mostly Python start-up and compilation on one core: a module
starts its runs when its first test starts (only those whose tests run in this process, see
`selected`) and its in-process tests go on meanwhile. Each test still checks its own run's exit
status and output.
"""

from __future__ import annotations

import subprocess
import sys


class Run:
    """``python <args>`` started now; `result` waits for it."""

    def __init__(self, args):
        self.process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self._result = None

    def result(self, timeout: float) -> subprocess.CompletedProcess:
        if self._result is None:
            try:
                stdout, stderr = self.process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop()
                raise
            self._result = subprocess.CompletedProcess(self.process.args, self.process.returncode, stdout, stderr)
        return self._result

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def selected_values(request, test_name: str, argname: str) -> set:
    """The values of parameter ``argname`` among the selected tests ``test_name`` of ``request``'s
    module that run in this process (empty where `selected` cannot tell: see there)."""
    if not selected(request, test_name):
        return set()
    return {
        item.callspec.params[argname] for item in request.session.items
        if getattr(item, "originalname", item.name) == test_name and item.module is request.module
    }


def selected(request, *test_names) -> bool:
    """Whether any test of ``request``'s module named one of ``test_names`` runs in this process.

    Under pytest-xdist a worker's ``session.items`` holds every collected test, not only those it
    will be sent; the answer holds there under ``--dist loadfile`` (setup.cfg), which sends a
    module's tests to one worker, the one that runs the caller's module-scoped fixture. Under any
    other distribution it is False, and each test starts its run when it asks for the run itself.
    """
    if hasattr(request.config, "workerinput") and request.config.getoption("dist") != "loadfile":
        return False
    return any(
        getattr(item, "originalname", item.name) in test_names and item.module is request.module
        for item in request.session.items
    )
