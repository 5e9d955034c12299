"""torchrun worker: gather_1d joins tensors of different lengths from every rank, in rank order."""

import rank_report
import torch
import torch.distributed as dist
from tp_checks import fail
from worker_start import start_worker

from nemo_beyond_nll.megatron.completions import gather_1d


def main():
    rank, world, _ = start_worker()
    mine = torch.arange(rank + 1, dtype=torch.float32) + 10 * rank  # rank r sends r + 1 values
    out = gather_1d(mine)
    expected = torch.cat([torch.arange(r + 1, dtype=torch.float32) + 10 * r for r in range(world)])
    if not torch.equal(out, expected):
        fail(f"gathered {out.tolist()}, expected {expected.tolist()}")
    dist.barrier()
    dist.destroy_process_group()
    return {"gathered": out.tolist()}


if __name__ == "__main__":
    rank_report.run(main)
