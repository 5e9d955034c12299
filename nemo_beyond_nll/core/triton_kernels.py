"""Triton kernels for the two passes of the vocab-parallel objective.

Both kernels give one program to one row and walk its vocabulary slice in blocks, so each pass
reads the logits exactly once:

- `row_stats`: per row, this rank's max, sum of exp(z - max) (merged online block by block) and
  the target logit when this rank owns the target; the same [3, N] triples as the torch helper.
- `write_gradient`: per row, scale * (softmax - onehot) with softmax = exp(z - lse), written in the
  logits' dtype into the gradient buffer, which may be the logits' own storage.

The math runs in fp32 (fp64 for fp64 logits). Nothing here knows about tensor parallelism: the
caller merges the stats across ranks and computes the per-row scale.

Under TRITON_INTERPRET=1 (set before this module is imported) the same kernels run on CPU tensors.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

# Largest vocabulary block a program holds at once: enough to keep loads wide, small enough for registers.
MAX_BLOCK_V = 4096


@triton.jit
def _row_stats_kernel(
    logits_ptr, row_stride, target_ptr, owned_ptr, stats_ptr, n_rows, v_local,
    BLOCK_V: tl.constexpr, ACC: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = logits_ptr + row * row_stride
    cols = tl.arange(0, BLOCK_V)
    row_max = tl.full((), float("-inf"), ACC)
    sum_exp = tl.zeros((), ACC)
    for start in range(0, v_local, BLOCK_V):
        offs = start + cols
        z = tl.load(row_ptr + offs, mask=offs < v_local, other=float("-inf")).to(ACC)
        new_max = tl.maximum(row_max, tl.max(z, axis=0))
        # While every logit so far is -inf, shift by 0 so that exp gives 0 and never nan.
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        sum_exp = sum_exp * tl.exp(row_max - shift) + tl.sum(tl.exp(z - shift), axis=0)
        row_max = new_max
    row_max = tl.where(row_max == float("-inf"), 0.0, row_max)
    owned = tl.load(owned_ptr + row) != 0
    target = tl.load(target_ptr + row)
    target_logit = tl.load(row_ptr + target, mask=owned, other=0.0).to(ACC)
    tl.store(stats_ptr + row, row_max)
    tl.store(stats_ptr + n_rows + row, sum_exp)
    tl.store(stats_ptr + 2 * n_rows + row, tl.where(owned, target_logit, 0.0))


@triton.jit
def _write_gradient_kernel(
    logits_ptr, logits_row_stride, grad_ptr, grad_row_stride, lse_ptr, scale_ptr, target_ptr, owned_ptr,
    v_local, BLOCK_V: tl.constexpr, ACC: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    logits_row = logits_ptr + row * logits_row_stride
    grad_row = grad_ptr + row * grad_row_stride
    lse = tl.load(lse_ptr + row).to(ACC)
    scale = tl.load(scale_ptr + row).to(ACC)
    onehot_scale = tl.where(tl.load(owned_ptr + row) != 0, scale, 0.0)
    target = tl.load(target_ptr + row)
    cols = tl.arange(0, BLOCK_V)
    for start in range(0, v_local, BLOCK_V):
        offs = start + cols
        in_row = offs < v_local
        z = tl.load(logits_row + offs, mask=in_row, other=float("-inf")).to(ACC)
        g = tl.exp(z - lse) * scale - tl.where(offs == target, onehot_scale, 0.0)
        tl.store(grad_row + offs, g.to(grad_ptr.dtype.element_ty), mask=in_row)


# True when TRITON_INTERPRET=1 was set at import: the kernels then run (slowly) on CPU tensors.
INTERPRETED = isinstance(_row_stats_kernel, InterpretedFunction)


def _acc_dtype(logits: Tensor):
    return tl.float64 if logits.dtype == torch.float64 else tl.float32


def _block_v(v_local: int, block_v) -> int:
    if block_v is not None:
        if block_v <= 0 or block_v & (block_v - 1):
            raise ValueError(f"block_v must be a positive power of two, got {block_v}")
        return block_v
    return min(MAX_BLOCK_V, triton.next_power_of_2(max(v_local, 1)))


def _num_warps(block: int) -> int:
    return max(1, min(16, block // 256))


def row_stats(logits: Tensor, local_target: Tensor, owned: Tensor, *, block_v=None) -> Tensor:
    """[3, N]: this rank's row max, sum of exp(z - max) and target logit (0 where not owned)."""
    n, v_local = logits.shape
    if logits.stride(1) != 1:
        raise ValueError("row_stats needs logits whose last dimension is contiguous")
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    stats = torch.empty(3, n, dtype=dtype, device=logits.device)
    if n == 0:
        return stats
    block = _block_v(v_local, block_v)
    _row_stats_kernel[(n,)](
        logits, logits.stride(0), local_target.contiguous(), owned.contiguous(), stats, n, v_local,
        BLOCK_V=block, ACC=_acc_dtype(logits), num_warps=_num_warps(block),
    )
    return stats


def write_gradient(
    logits: Tensor, grad: Tensor, lse: Tensor, scale: Tensor, local_target: Tensor, owned: Tensor, *, block_v=None
) -> None:
    """grad = scale * (softmax - onehot) row by row; `grad` may be `logits` itself."""
    n, v_local = logits.shape
    if logits.stride(1) != 1 or grad.stride(1) != 1:
        raise ValueError("write_gradient needs logits and grad whose last dimension is contiguous")
    if n == 0:
        return
    block = _block_v(v_local, block_v)
    _write_gradient_kernel[(n,)](
        logits, logits.stride(0), grad, grad.stride(0), lse.contiguous(), scale.contiguous(),
        local_target.contiguous(), owned.contiguous(), v_local,
        BLOCK_V=block, ACC=_acc_dtype(logits), num_warps=_num_warps(block),
    )
