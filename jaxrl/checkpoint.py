"""Checkpoints with orbax-checkpoint: atomic saves, validated restores, no pickle.

A run folder's checkpoints live in ``OUT/checkpoints/<update>/`` with two items: ``state`` (the
train state of all runs, leading axis = run) and ``meta`` (JSON: algorithm, env, config, update).
orbax writes each step to a temporary folder and renames it when complete, so an interrupted save
never replaces a good checkpoint.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import jax


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or belongs to another run/algorithm/env."""


def _ocp():
    logging.getLogger("absl").setLevel(logging.ERROR)
    import orbax.checkpoint as ocp

    return ocp


def _manager(directory: Path, create: bool):
    ocp = _ocp()
    options = ocp.CheckpointManagerOptions(create=create, enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def checkpoint_dir(out: str | os.PathLike) -> Path:
    return Path(out) / "checkpoints"


def save(out: str | os.PathLike, update: int, state: Any, meta: dict) -> Path:
    """Save ``state`` at iteration ``update`` (refuses to overwrite an existing step)."""
    ocp = _ocp()
    directory = checkpoint_dir(out)
    manager = _manager(directory, create=True)
    if update in manager.all_steps():
        raise CheckpointError(f"{directory / str(update)} already exists; not overwriting it")
    manager.save(update, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    manager.wait_until_finished()
    manager.close()
    return directory / str(update)


def latest_step(out: str | os.PathLike) -> int | None:
    directory = checkpoint_dir(out)
    if not directory.is_dir():
        return None
    return _manager(directory, create=False).latest_step()


def read_meta(out: str | os.PathLike, update: int | None = None) -> dict:
    ocp = _ocp()
    directory = checkpoint_dir(out)
    update = latest_step(out) if update is None else update
    if update is None:
        raise CheckpointError(f"no checkpoint in {directory}")
    try:
        return _manager(directory, create=False).restore(update, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    except Exception as err:  # orbax raises many types for unreadable data
        raise CheckpointError(f"checkpoint {directory / str(update)} is unreadable (corrupt or incomplete): {err}") from None


def restore(out: str | os.PathLike, abstract_state: Any, expect: dict, update: int | None = None) -> tuple[Any, dict]:
    """Restore the state saved at ``update`` (default: the latest) into the structure ``abstract_state``.

    ``expect`` holds meta entries that must match (e.g. algorithm, env, num_runs); a mismatch or a
    shape/structure difference raises ``CheckpointError`` naming what differs. Nothing is written.
    """
    ocp = _ocp()
    directory = checkpoint_dir(out)
    update = latest_step(out) if update is None else update
    if update is None:
        raise CheckpointError(f"no checkpoint in {directory}")
    meta = read_meta(out, update)
    for key, value in expect.items():
        if meta.get(key) != value:
            raise CheckpointError(
                f"checkpoint {directory / str(update)} was saved with {key}={meta.get(key)!r}, "
                f"but this run has {key}={value!r}"
            )
    try:
        restored = _manager(directory, create=False).restore(
            update, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        )
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {directory / str(update)} does not match this agent's train state "
            f"(corrupt, or saved by another config/version): {str(err)[:500]}"
        ) from None
    return restored.state, meta


def abstract_like(tree: Any, sharding=None) -> Any:
    """ShapeDtypeStructs for ``tree`` (or an ``eval_shape`` result), placed on ``sharding``."""
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
