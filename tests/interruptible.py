"""Child processes that Ctrl-C (SIGINT) reaches however pytest was started.

A shell starts a background job (``cmd &``, and any command run by a non-interactive shell's job
runner) with SIGINT ignored, its children inherit that, and Python then installs no
KeyboardInterrupt handler: a test that sends SIGINT to such a child would wait for nothing.
`restore_ctrl_c` gives the child SIGINT's default disposition back before it executes.
"""

from __future__ import annotations

import signal


def restore_ctrl_c() -> None:
    """``preexec_fn`` for `subprocess.Popen`: SIGINT as a terminal's Ctrl-C would find it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
