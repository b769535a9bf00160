"""Moved: the run directory lives in :mod:`recovery_jax.rundir` (kept as an import path for older code)."""

from recovery_jax.rundir import *  # noqa: F401,F403
from recovery_jax.rundir import _write_bytes_atomic  # noqa: F401
