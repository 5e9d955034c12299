"""torchrun worker: check_finite=True names the first bad row and the rank whose shard holds it, the
same on every rank, with no collective beyond the forward's one all-gather."""

import math

import torch
import rank_report
import torch.distributed as dist
from tp_checks import collectives, counting, fail
from worker_start import start_worker

from nemo_beyond_nll.core import passes
from nemo_beyond_nll import vocab_parallel_objective


def main():
    rank, world, group = start_worker(tp_group=True)
    passes.all_gather_flat = counting(passes.all_gather_flat)
    dist.all_reduce = counting(dist.all_reduce)
    v_local = 8
    full = torch.randn(6, v_local * world, generator=torch.Generator().manual_seed(0))
    target = torch.arange(6) % (v_local * world)
    full[4, world * v_local - 1] = math.nan  # in the last rank's shard
    full[5, 0] = math.inf  # in rank 0's shard
    shard = full[:, rank * v_local:(rank + 1) * v_local]
    collectives.clear()
    try:
        vocab_parallel_objective(shard.clone(), target, "nll", tp_group=group, check_finite=True)
    except ValueError as err:
        message = str(err)
    else:
        fail("no error for NaN logits")
    if len(collectives) != 1:
        fail(f"collectives {collectives}: the check must add none")
    clean = vocab_parallel_objective(shard[:4].clone(), target[:4], "nll", tp_group=group, check_finite=True)
    return {"message": message, "clean_finite": bool(torch.isfinite(clean.loss).all())}


if __name__ == "__main__":
    rank_report.run(main)
