"""Training checkpoints (orbax): arrays plus JSON metadata, atomic, newest-good-first restore."""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves ``(state pytree, JSON metadata)`` under ``directory/<step>``, keeping the newest few.

    Orbax writes a step to a temporary folder and renames it when complete, so a process killed
    mid-save leaves no half-written step behind; a step that is present but unreadable (disk
    corruption, a truncated copy) is skipped on restore with a warning, and the one before it used.
    """

    def __init__(self, directory: str, max_to_keep: int = 3):
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any, metadata: dict) -> None:
        if step in self._manager.all_steps():  # an unreadable leftover of an earlier run
            self._manager.delete(step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(metadata))
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def restore_latest(self, like: Any) -> tuple[int, Any, dict] | None:
        """(step, state shaped like ``like``, metadata) of the newest readable step, or None."""
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                restored = self._manager.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                  meta=ocp.args.JsonRestore()),
                )
            except Exception as error:  # noqa: BLE001 - any unreadable step: fall back to an older one
                logging.warning("checkpoint %s/%d is unreadable (%s); trying an older one",
                                self.directory, step, error)
                continue
            return step, restored["state"], dict(restored["meta"])
        return None
