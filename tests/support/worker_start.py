"""How every multi-process test worker starts: one CPU thread per rank and a gloo process group.

torchrun workers (tests/core, tests/megatron; see ``run_torchrun`` in tests/conftest.py) call
``start_worker()``, which reads the rank and world size torchrun sets in the environment;
torch.multiprocessing.spawn workers (tests/automodel) pass their rank, world size and a free port.
Like ``rank_report`` and ``tp_checks``, this imports by module name: tests/support is on the path.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

import torch
import torch.distributed as dist


class Worker(NamedTuple):
    rank: int
    world: int
    tp_group: Optional[object]  # a group of every rank, when asked for: the workers' tensor-parallel group


def start_worker(rank: Optional[int] = None, world: Optional[int] = None, port: Optional[int] = None,
                 tp_group: bool = False) -> Worker:
    """Join the gloo group of `world` ranks as `rank` (both from torchrun's environment when not given,
    else over 127.0.0.1:`port`); with `tp_group`, also make a group of every rank."""
    # The ranks share a few cores: more threads each only make them wait on one another.
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # for anything the rank starts
    torch.set_num_threads(1)
    if rank is None:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
    else:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    group = dist.new_group(list(range(world))) if tp_group else None
    return Worker(rank, world, group)
