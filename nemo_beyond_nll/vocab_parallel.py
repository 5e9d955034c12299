"""Any probability objective over vocab-parallel logits, exactly, in two passes and one collective.

Layout (Megatron's): rank r of the tensor-parallel group holds logits for token ids
[r * V_local, (r + 1) * V_local). The algorithm:

1. forward, one read of the logits: per row, this rank's (max, sum of exp(z - max), target logit);
2. one all-gather of those 3N floats, merged online into the global log-sum-exp and the target
   logit, hence log p, p, the kept mask, the loss and the gradient weight w(p), identically on
   every rank;
3. backward, one read and one write: w(p) * upstream * (softmax - onehot), written in the logits'
   dtype into the logits' own storage (`inplace_backward`, as Megatron and Liger do) or a new buffer.

Only per-row scalars are kept between forward and backward besides the logits themselves; the
fp32 softmax math runs over row chunks, so bf16 logits never get a full fp32 copy.

Both passes have two backends with the same results: torch (chunked tensor ops, any device) and
Triton (`triton_kernels`, one program per row), used by default for CUDA logits when triton imports.

Nothing here knows about Megatron; the group is any torch.distributed process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor

from .objectives import Objective, get_objective

# torch 2.13 renamed all_gather_into_tensor; older containers only have the old name.
_all_gather_flat = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

# Elements of fp32 scratch per chunk: big enough for vectorised ops, small enough to stay in cache.
CHUNK_ELEMENTS = 1 << 18


@dataclass
class ObjectiveOutput:
    """Per-token results, each shaped like the target.

    loss: the objective's value, differentiable w.r.t. the logits, 0 where not kept.
    prob: the target probability, detached (0 at ignore_index).
    Both are fp32 (fp64 for fp64 logits) whatever the logits' dtype.
    kept: True where the token counts: not ignore_index and inside the threshold.
    """

    loss: Tensor
    prob: Tensor
    kept: Tensor

    def mean_over_kept(self) -> Tensor:
        """The paper's reduction: summed loss over the number of kept tokens (0 when none is kept)."""
        return self.loss.sum() / self.kept.sum().clamp(min=1)


def _group_rank_and_size(group) -> tuple[int, int]:
    if group is None:
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _compute_dtype(logits: Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _chunk_rows(v_local: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(v_local, 1))


BACKENDS = ("torch", "triton")
BACKEND_ENV = "NEMO_BEYOND_NLL_BACKEND"


@lru_cache(maxsize=None)
def triton_available() -> bool:
    try:
        from . import triton_kernels  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(logits: Tensor, backend: Optional[str] = None) -> str:
    """The backend that runs the two passes: `backend`, else $NEMO_BEYOND_NLL_BACKEND, else
    "triton" for CUDA logits with a contiguous last dimension when triton imports, else "torch"."""
    backend = backend or os.environ.get(BACKEND_ENV) or None
    if backend is None:
        fits = logits.is_cuda and logits.stride(-1) == 1
        return "triton" if fits and triton_available() else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "triton":
        if not triton_available():
            raise ValueError("backend='triton' needs the triton package, which does not import here")
        from . import triton_kernels

        if not logits.is_cuda and not triton_kernels.INTERPRETED:
            raise ValueError(
                "backend='triton' needs CUDA logits, or TRITON_INTERPRET=1 set before triton_kernels "
                "is imported for CPU tensors"
            )
        if logits.stride(-1) != 1:
            raise ValueError("backend='triton' needs logits whose last dimension is contiguous")
    return backend


class _VocabParallelObjective(torch.autograd.Function):
    """Steps are named static helpers, so each can be read (and tested) on its own."""

    @staticmethod
    def check_targets(target: Tensor, valid: Tensor, vocab_size: int, ignore_index: int) -> None:
        bad = valid & ((target < 0) | (target >= vocab_size))
        if bool(bad.any()):
            value = int(target[bad][0])
            raise ValueError(
                f"target id {value} is outside the vocabulary [0, {vocab_size}) and is not "
                f"ignore_index={ignore_index} (pass check_targets=False to skip this check)"
            )

    @staticmethod
    def local_row_stats(logits: Tensor, local_target: Tensor, owned: Tensor, backend: str = "torch") -> Tensor:
        """[3, N] in the compute dtype: this rank's row max, sum of exp(z - max), target logit.

        A row that is all -inf on this rank gets max 0 and sum 0, so it drops out of the merge.
        """
        if backend == "triton":
            from . import triton_kernels

            return triton_kernels.row_stats(logits, local_target, owned)
        n, v_local = logits.shape
        dtype = _compute_dtype(logits)
        stats = torch.empty(3, n, dtype=dtype, device=logits.device)
        step = _chunk_rows(v_local)
        scratch = torch.empty(min(step, n), v_local, dtype=dtype, device=logits.device)
        for start in range(0, n, step):
            rows = slice(start, min(start + step, n))
            chunk = logits[rows]
            buf = scratch[: chunk.shape[0]]
            row_max = chunk.amax(dim=-1).to(dtype)
            row_max = torch.where(row_max == float("-inf"), 0.0, row_max)
            torch.sub(chunk, row_max[:, None], out=buf)
            stats[0, rows] = row_max
            stats[1, rows] = buf.exp_().sum(dim=-1)
        target_logit = logits.gather(1, local_target[:, None]).squeeze(1).to(dtype)
        stats[2] = torch.where(owned, target_logit, 0.0)
        return stats

    @staticmethod
    def gather_row_stats(stats: Tensor, group) -> Tensor:
        """[tp, 3, N]: every rank's triples, by one all-gather."""
        world = _group_rank_and_size(group)[1]
        if world == 1:
            return stats[None]
        out = torch.empty(world * 3, stats.shape[1], dtype=stats.dtype, device=stats.device)
        _all_gather_flat(out, stats.contiguous(), group=group)
        return out.view(world, 3, -1)

    @staticmethod
    def combine_row_stats(stacked: Tensor) -> Tensor:
        """[k, 3, N] triples of k disjoint vocabulary parts (ranks' shards, blocks) -> [3, N] of their union."""
        row_max, sum_exp, target_logit = stacked.unbind(1)
        union_max = row_max.amax(dim=0)
        total = (sum_exp * torch.exp(row_max - union_max)).sum(dim=0)
        return torch.stack((union_max, total, target_logit.sum(dim=0)))

    @staticmethod
    def merge_row_stats(gathered: Tensor) -> tuple[Tensor, Tensor]:
        """Global log-sum-exp and target logit per row, merged the same way on every rank."""
        row_max, total, target_logit = _VocabParallelObjective.combine_row_stats(gathered)
        return row_max + torch.log(total), target_logit

    @staticmethod
    def write_gradient(
        logits: Tensor,
        grad: Tensor,
        lse: Tensor,
        scale: Tensor,
        local_target: Tensor,
        owned: Tensor,
        backend: str = "torch",
    ) -> None:
        """grad = scale * (softmax - onehot), chunk by chunk; `grad` may be `logits` itself."""
        if backend == "triton":
            from . import triton_kernels

            return triton_kernels.write_gradient(logits, grad, lse, scale, local_target, owned)
        n, v_local = logits.shape
        dtype = _compute_dtype(logits)
        step = _chunk_rows(v_local)
        direct = grad.dtype == dtype  # fp32/fp64: compute straight into the gradient's storage
        scratch = None if direct else torch.empty(min(step, n), v_local, dtype=dtype, device=logits.device)
        onehot_scale = torch.where(owned, scale, 0.0)
        for start in range(0, n, step):
            rows = slice(start, min(start + step, n))
            buf = grad[rows] if direct else scratch[: rows.stop - start]
            torch.sub(logits[rows], lse[rows, None], out=buf)
            buf.exp_().mul_(scale[rows, None])
            buf.scatter_add_(1, local_target[rows, None], -onehot_scale[rows, None])
            if not direct:
                grad[rows].copy_(buf)

    @staticmethod
    def localize_targets(target, group, v_local, ignore_index, check_targets) -> tuple[Tensor, Tensor, Tensor]:
        """(valid, local_target, owned): which tokens count, and this rank's column of the target.

        local_target is 0 where this rank does not own the target, so it can always index a row.
        """
        rank, world = _group_rank_and_size(group)
        valid = target != ignore_index
        if check_targets:
            _VocabParallelObjective.check_targets(target, valid, v_local * world, ignore_index)
        local_target = target - rank * v_local
        owned = valid & (local_target >= 0) & (local_target < v_local)
        return valid, torch.where(owned, local_target, 0), owned

    @staticmethod
    def token_outputs(objective: Objective, valid: Tensor, lse: Tensor, target_logit: Tensor):
        """(loss, prob, kept, weight) per token from the merged row stats; weight is w(p) on kept tokens."""
        logprob = torch.where(valid, target_logit - lse, 0.0)
        prob = torch.where(valid, logprob.exp(), 0.0)
        kept = valid
        threshold_mask = objective.keep_mask(prob)
        if threshold_mask is not None:
            kept = kept & threshold_mask
        loss = torch.where(kept, objective.value(logprob), 0.0)
        weight = torch.where(kept, objective.weight(logprob), 0.0)
        return loss, prob, kept, weight

    @staticmethod
    def forward(ctx, logits, target, objective, group, ignore_index, check_targets, inplace_backward, backend):
        steps = _VocabParallelObjective
        valid, local_target, owned = steps.localize_targets(
            target, group, logits.shape[1], ignore_index, check_targets
        )
        stats = steps.local_row_stats(logits, local_target, owned, backend)
        lse, target_logit = steps.merge_row_stats(steps.gather_row_stats(stats, group))
        loss, prob, kept, weight = steps.token_outputs(objective, valid, lse, target_logit)

        ctx.save_for_backward(logits, local_target, owned, lse, weight)
        ctx.inplace_backward = inplace_backward
        ctx.backend = backend
        ctx.backward_done = False
        ctx.mark_non_differentiable(prob, kept)
        return loss, prob, kept

    @staticmethod
    def backward(ctx, grad_loss, _grad_prob, _grad_kept):
        if ctx.inplace_backward and ctx.backward_done:
            raise RuntimeError(
                "vocab_parallel_objective: backward ran twice, but the first one overwrote the logits "
                "with their gradient (inplace_backward=True); use inplace_backward=False to retain the graph"
            )
        logits, local_target, owned, lse, weight = ctx.saved_tensors
        grad = logits if ctx.inplace_backward else torch.empty_like(logits)
        scale = grad_loss.to(weight.dtype) * weight
        _VocabParallelObjective.write_gradient(logits, grad, lse, scale, local_target, owned, ctx.backend)
        ctx.backward_done = True
        return grad, None, None, None, None, None, None, None


def vocab_parallel_objective(
    logits: Tensor,
    target: Tensor,
    objective,
    *,
    tp_group=None,
    ignore_index: int = -100,
    check_targets: bool = True,
    inplace_backward: Optional[bool] = None,
    backend: Optional[str] = None,
) -> ObjectiveOutput:
    """Per-token probability objective over this rank's vocabulary slice.

    Args:
        logits: ``[..., V_local]`` logits of this rank's contiguous vocab slice (the whole
            vocabulary when ``tp_group`` is None); fp32, bf16, fp16 or fp64.
        target: ``[...]`` global token ids.
        objective: an :class:`Objective` or a name accepted by :func:`get_objective`.
        tp_group: the tensor-parallel process group the vocabulary is split over.
        ignore_index: target id that marks a token with no loss.
        check_targets: raise ``ValueError`` on a target outside the vocabulary (costs a host sync).
        inplace_backward: write the gradient into the logits' storage (no extra logits-sized buffer;
            the logits are unusable after backward, and backward can run only once). Default: True
            except for fp64, which is kept for gradcheck.
        backend: "torch" or "triton" for the two passes over the logits; default: the environment
            variable NEMO_BEYOND_NLL_BACKEND, else "triton" for CUDA logits when triton imports.
            Both give the same results up to float rounding.

    Returns:
        :class:`ObjectiveOutput` with ``loss``, ``prob`` and ``kept`` shaped like ``target``,
        equal on every rank of ``tp_group``.
    """
    objective = get_objective(objective)
    if logits.shape[:-1] != target.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} disagree: "
            "logits must be target's shape plus a vocabulary dimension"
        )
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    if inplace_backward is None:
        inplace_backward = logits.dtype != torch.float64
    v_local = logits.shape[-1]
    flat_logits = logits.reshape(-1, v_local)
    loss, prob, kept = _VocabParallelObjective.apply(
        flat_logits,
        target.reshape(-1),
        objective,
        tp_group,
        ignore_index,
        check_targets,
        inplace_backward,
        resolve_backend(flat_logits, backend),
    )
    shape = target.shape
    return ObjectiveOutput(loss.view(shape), prob.view(shape), kept.view(shape))
