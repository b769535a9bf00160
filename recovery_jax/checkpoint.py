"""orbax checkpoints of the whole run state at episode boundaries.

A checkpoint holds the state pytree (params, optimizer state, global step, rng) and the losses so
far; the order is a pure function of the seed, so it is recomputed, not stored. orbax writes into a
temporary directory and renames it when complete, so a run killed mid-save still has the previous
checkpoint.
"""

from __future__ import annotations

import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, run_path: str, keep: int = 2):
        self.directory = os.path.abspath(os.path.join(run_path, "checkpoints"))
        self.keep = keep
        self._mngr = None

    @property
    def mngr(self) -> ocp.CheckpointManager:
        if self._mngr is None:
            opts = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                                enable_async_checkpointing=False)
            self._mngr = ocp.CheckpointManager(self.directory, options=opts)
        return self._mngr

    def latest(self) -> int | None:
        if not os.path.isdir(self.directory):
            return None
        return self.mngr.latest_step()

    def save(self, episode: int, state, eval_losses, train_losses, step_eval=None) -> None:
        losses = {"episode": np.asarray(episode), "eval_losses": np.asarray(eval_losses),
                  "train_losses": np.asarray(train_losses)}
        if step_eval is not None:
            losses["step_eval_losses"] = np.asarray(step_eval)
        state = jax.device_get(state)
        self.mngr.save(episode, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        losses=ocp.args.StandardSave(losses)), force=True)
        self.mngr.wait_until_finished()

    def restore(self, state_like):
        """Restore into the structure (and dtypes) of `state_like`; returns (state, losses dict)."""
        step = self.latest()
        abstract = jax.tree_util.tree_map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype)
                                          if hasattr(x, "shape") else x, jax.device_get(state_like))
        restored = self.mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), losses=ocp.args.StandardRestore()))
        state = jax.tree_util.tree_map(jax.numpy.asarray, restored["state"])
        losses = {k: np.asarray(v) for k, v in restored["losses"].items()}
        return state, losses

    def clear(self) -> None:
        """A finished run keeps its results, not its training state."""
        if self._mngr is not None:
            self._mngr.close()
            self._mngr = None
        shutil.rmtree(self.directory, ignore_errors=True)
