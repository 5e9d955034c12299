"""Run Megatron-Core on CPU with the gloo backend (tests, the CPU recipe, benchmarks).

Megatron-Core assumes CUDA in three places that a CPU run meets; each shim below replaces one,
and nothing else is changed:
1. the model-parallel RNG tracker is seeded through CUDA: use the plain (inference) tracker, which
   draws the same dropout mask on every tensor-parallel rank;
2. `GlobalMemoryBuffer.get_tensor` allocates on the current CUDA device: allocate on CPU;
3. the default causal attention mask is built on CUDA: callers pass :func:`causal_mask`;
4. tensor-parallel gathers (the multi-token-prediction head's, sequence parallelism's) allocate on
   `torch.cuda.current_device()`: on a torch without CUDA it answers "cpu".
"""

from __future__ import annotations

import operator
import os
from datetime import timedelta
from functools import reduce

import torch
import torch.distributed as dist


def _cpu_get_tensor(self, tensor_shape, dtype, name, mem_alloc_context=None):
    required = reduce(operator.mul, tensor_shape, 1)
    buffer = self.buffer.get((name, dtype))
    if buffer is None or buffer.numel() < required:
        buffer = self.buffer[(name, dtype)] = torch.empty(required, dtype=dtype)
    return buffer[:required].view(*tensor_shape)


def apply_cpu_shims() -> None:
    """Shims 1, 2 and 4 (idempotent). Call after `initialize_model_parallel`."""
    from megatron.core import tensor_parallel
    from megatron.core.utils import GlobalMemoryBuffer

    GlobalMemoryBuffer.get_tensor = _cpu_get_tensor
    tensor_parallel.random.initialize_rng_tracker(inference_rng_tracker=True, force_reset=True)
    if not torch.cuda.is_available():
        torch.cuda.current_device = lambda: "cpu"


def causal_mask(seq_len: int) -> torch.Tensor:
    """Shim 3: Megatron's attention mask, [1, 1, s, s], True where attention is masked."""
    return torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool), diagonal=1)[None, None]


def init_distributed_cpu(timeout_s: int = 600) -> tuple[int, int]:
    """Start (or join) the gloo process group that torchrun describes; (rank, world size).

    Outside torchrun this makes a one-process group on a free local port, without exporting
    MASTER_ADDR/MASTER_PORT, so that processes this one starts do not inherit a port it holds.
    """
    if not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s)
        if "RANK" in os.environ and "MASTER_ADDR" in os.environ:
            dist.init_process_group("gloo", timeout=timeout)
        else:
            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                                    world_size=1, timeout=timeout)
    return dist.get_rank(), dist.get_world_size()


def shutdown_distributed() -> None:
    """Tear down Megatron's groups and the process group together; exiting without it can abort gloo."""
    if not dist.is_initialized():
        return
    from megatron.core import parallel_state

    dist.barrier()
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    dist.destroy_process_group()


def init_megatron_cpu(tensor_parallel: int = 1, pipeline_parallel: int = 1) -> None:
    """(Re)initialise Megatron-Core's parallel state on CPU with the given sizes."""
    from megatron.core import parallel_state

    init_distributed_cpu()
    if parallel_state.model_parallel_is_initialized():
        same = (parallel_state.get_tensor_model_parallel_world_size() == tensor_parallel
                and parallel_state.get_pipeline_model_parallel_world_size() == pipeline_parallel)
        if same:  # reuse the groups: torch keeps every group made, and each gloo group its threads,
            apply_cpu_shims()  # so re-making them for each run of a sweep leaks thousands of threads
            return
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=tensor_parallel, pipeline_model_parallel_size=pipeline_parallel
    )
    apply_cpu_shims()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
