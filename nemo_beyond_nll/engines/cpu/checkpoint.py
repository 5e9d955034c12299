"""Per-rank checkpoints with an atomic `latest` pointer, so an interrupted save is never resumed from.

Layout: <run>/checkpoints/step_000100/rank_00.pt ... and <run>/checkpoints/latest holding "100".
Every rank writes its own shard (tensor-parallel weights differ per rank); `latest` moves only after
all ranks have finished, and older steps beyond `keep` are removed.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from ...run_folder import LATEST
from ...utils.files import atomic_write, atomic_write_text


def _step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:06d}"


def latest_step(root: Path) -> Optional[int]:
    pointer = Path(root) / LATEST
    return int(pointer.read_text().strip()) if pointer.exists() else None


def save_checkpoint(root: Path, step: int, state: dict, *, rank: int, keep: int = 2) -> None:
    """Collective: every rank saves `state`; rank 0 then points `latest` at `step` and prunes."""
    root = Path(root)
    target = _step_dir(root, step) / f"rank_{rank:02d}.pt"
    atomic_write(target, lambda tmp: torch.save(state, tmp))
    dist.barrier()
    if rank == 0:
        atomic_write_text(root / LATEST, f"{step}\n")
        steps = sorted(int(p.name.split("_")[1]) for p in root.glob("step_*") if p.is_dir())
        kept = [s for s in steps if s <= step][-keep:]
        for old in steps:  # older steps, and later ones left by an interrupted save
            if old not in kept:
                shutil.rmtree(_step_dir(root, old), ignore_errors=True)
    dist.barrier()


def remove_unfinished_steps(root: Path) -> list:
    """Delete step folders that `latest` does not cover (an interrupted save's); returns their steps.

    Call on one rank, before training starts: steps at or below `latest` are complete and kept.
    """
    root = Path(root)
    done = latest_step(root) if root.is_dir() else None
    stale = [p for p in root.glob("step_*") if p.is_dir() and (done is None or int(p.name.split("_")[1]) > done)]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return sorted(int(p.name.split("_")[1]) for p in stale)


def load_checkpoint(root: Path, *, rank: int) -> Optional[dict]:
    """This rank's state at the `latest` step, or None for a fresh run. Steps past `latest` are ignored."""
    step = latest_step(root)
    if step is None:
        return None
    path = _step_dir(Path(root), step) / f"rank_{rank:02d}.pt"
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} is missing: the run was saved with another parallel layout")
    try:
        # Tensors, numbers, strings and containers only: a crafted file in a run folder must not be
        # able to run code on resume (weights_only refuses any other pickled object).
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"checkpoint {path} holds objects other than tensors and plain values; refusing to "
                         f"load it ({str(err).splitlines()[0]})") from None
