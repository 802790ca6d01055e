"""Orbax checkpoints of a train state plus JSON metadata (config, data position, stage).

Saves are asynchronous where orbax supports it; orbax writes each step into a temporary directory and
renames it when complete, so a run killed mid-save (even by SIGKILL) leaves the previous checkpoint as
the latest readable one. In multi-host runs every process calls `save`; orbax coordinates them and
process 0 writes the metadata.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from thflax.errors import CheckpointError


class Checkpointer:
    """A `ocp.CheckpointManager` for one training stage's directory."""

    def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True, read_only: bool = False):
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=async_save,
                                                 create=not read_only, read_only=read_only))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores into the structure, shapes, dtypes and shardings of `target`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                     meta=ocp.args.JsonRestore()))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"checkpoint {self.directory} step {step} does not match this "
                                  f"configuration's model: {str(e).splitlines()[0][:200]}") from e
        return out.state, out.meta

    def restore_meta(self, step: int | None = None) -> dict[str, Any]:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
