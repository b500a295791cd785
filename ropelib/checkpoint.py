"""Checkpoints that survive being killed mid-write and load without running pickled code."""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch


def atomic_save(obj, path: str | os.PathLike) -> None:
    """Write to a temporary file next to ``path``, then rename it over ``path``: a kill at any
    moment leaves either the old checkpoint or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors, numbers, strings and containers only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the reason and the fix
        raise RuntimeError(f"cannot load {path} safely (weights_only=True): {error}. It is not a ropelib "
                           "checkpoint, or it is corrupt; delete it to start over") from error


def rng_state(device: torch.device) -> dict:
    """Every random generator a training step touches (dropout, stochastic depth, jitter)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
