"""torchrun worker: gather_1d joins tensors of different lengths from every rank, in rank order."""

import sys

import torch
import torch.distributed as dist

from nemo_beyond_nll.megatron.probe_runner import gather_1d

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
mine = torch.arange(rank + 1, dtype=torch.float32) + 10 * rank  # rank r sends r + 1 values
out = gather_1d(mine)
expected = torch.cat([torch.arange(r + 1, dtype=torch.float32) + 10 * r for r in range(world)])
if not torch.equal(out, expected):
    sys.exit(f"rank {rank}: gathered {out.tolist()}, expected {expected.tolist()}")
print(f"rank {rank}: gathered {out.numel()} values")
dist.barrier()
dist.destroy_process_group()
