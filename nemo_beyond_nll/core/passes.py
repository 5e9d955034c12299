"""The steps of the vocab-parallel objective as public functions, apart from any autograd Function.

As Megatron-Core's `VocabParallelCrossEntropy` does for its cross entropy, each step is a plain
function that the unfused Function (:mod:`.vocab_parallel`) and the fused output layer
(:mod:`.linear`) both call, and that tests can read on its own. The torch implementations of the
two passes over the logits are here; :mod:`.backends` chooses between them and the Triton kernels.

Nothing here knows about Megatron; the group is any torch.distributed process group.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from .objectives import Objective

# torch 2.13 renamed all_gather_into_tensor; older containers only have the old name.
all_gather_flat = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

# Elements of fp32 scratch per chunk: big enough for vectorised ops, small enough to stay in cache.
CHUNK_ELEMENTS = 1 << 18


def group_rank_and_size(group) -> tuple[int, int]:
    """(rank, size) in `group`; (0, 1) for None, the single-process case."""
    if group is None:
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def compute_dtype(logits: Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def chunk_rows(v_local: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(v_local, 1))


def require_integer_target(target: Tensor) -> None:
    """One-line error for targets that are not token ids (torch's own would come from gather())."""
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer token ids, got {target.dtype}")


def check_targets(target: Tensor, valid: Tensor, vocab_size: int, ignore_index: int) -> None:
    bad = valid & ((target < 0) | (target >= vocab_size))
    if bool(bad.any()):
        value = int(target[bad][0])
        raise ValueError(
            f"target id {value} is outside the vocabulary [0, {vocab_size}) and is not "
            f"ignore_index={ignore_index} (pass check_targets=False to skip this check)"
        )


def localize_targets(target, group, v_local, ignore_index, check) -> tuple[Tensor, Tensor, Tensor]:
    """(valid, local_target, owned): which tokens count, and this rank's column of the target.

    local_target is 0 where this rank does not own the target, so it can always index a row.
    """
    rank, world = group_rank_and_size(group)
    valid = target != ignore_index
    if check:
        check_targets(target, valid, v_local * world, ignore_index)
    local_target = target - rank * v_local
    owned = valid & (local_target >= 0) & (local_target < v_local)
    return valid, torch.where(owned, local_target, 0), owned


def local_row_stats(logits: Tensor, local_target: Tensor, owned: Tensor) -> Tensor:
    """Pass 1 in torch: [3, N] in the compute dtype: this rank's row max, sum of exp(z - max), target logit.

    A row that is all -inf on this rank gets max 0 and sum 0, so it drops out of the merge.
    """
    n, v_local = logits.shape
    dtype = compute_dtype(logits)
    stats = torch.empty(3, n, dtype=dtype, device=logits.device)
    step = chunk_rows(v_local)
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


def gather_row_stats(stats: Tensor, group) -> Tensor:
    """[tp, 3, N]: every rank's triples, by one all-gather."""
    world = group_rank_and_size(group)[1]
    if world == 1:
        return stats[None]
    out = torch.empty(world * 3, stats.shape[1], dtype=stats.dtype, device=stats.device)
    all_gather_flat(out, stats.contiguous(), group=group)
    return out.view(world, 3, -1)


def combine_row_stats(stacked: Tensor) -> Tensor:
    """[k, 3, N] triples of k disjoint vocabulary parts (ranks' shards, blocks) -> [3, N] of their union."""
    row_max, sum_exp, target_logit = stacked.unbind(1)
    union_max = row_max.amax(dim=0)
    total = (sum_exp * torch.exp(row_max - union_max)).sum(dim=0)
    return torch.stack((union_max, total, target_logit.sum(dim=0)))


def merge_row_stats(gathered: Tensor) -> tuple[Tensor, Tensor]:
    """Global log-sum-exp and target logit per row, merged the same way on every rank."""
    row_max, total, target_logit = combine_row_stats(gathered)
    return row_max + torch.log(total), target_logit


def check_finite_rows(gathered: Tensor, lse: Tensor, target_logit: Tensor, valid: Tensor) -> None:
    """Raise a one-line ValueError naming the first row whose logits hold NaN or +inf anywhere, or
    -inf at the target (a -inf elsewhere is a mask and is allowed). It reads the merged and gathered
    row stats, which every rank of the group holds: no extra collective, one host sync, and every
    rank raises the same error, naming the tensor-parallel ranks whose vocabulary shard is bad."""
    bad = ~torch.isfinite(lse) | (valid & ~torch.isfinite(target_logit))
    if not bool(bad.any()):
        return
    row = int(bad.nonzero()[0, 0])
    shard_ok = torch.isfinite(gathered[:, :2, row]).all(dim=1) & ~torch.isnan(gathered[:, 2, row])
    if bool(valid[row]):
        shard_ok &= gathered[:, 2, row] != float("-inf")
    ranks = [r for r, ok in enumerate(shard_ok.tolist()) if not ok]
    raise ValueError(
        f"non-finite logits in row {row} (the first of {int(bad.sum())} of {bad.numel()} rows): log-sum-exp "
        f"{float(lse[row])}, target logit {float(target_logit[row])}, in the vocabulary shard of tensor-parallel "
        f"rank {', '.join(map(str, ranks)) or '?'} of {gathered.shape[0]}"
    )


def token_outputs(objective: Objective, valid: Tensor, lse: Tensor, target_logit: Tensor):
    """(loss, prob, kept, weight, power) per token from the merged row stats; weight is w(p) on kept tokens.

    The batch-dependent part of an objective (adaptive_power's m, returned as `power`; None for the
    others) is fixed here, from the merged stats that every rank holds, so it is the same on every
    rank and reaches every path (unfused, fused linear, both backends) with no collective.
    """
    logprob = torch.where(valid, target_logit - lse, 0.0)
    prob = torch.where(valid, logprob.exp(), 0.0)
    objective = objective.for_batch(prob, valid)
    kept = valid
    threshold_mask = objective.keep_mask(prob)
    if threshold_mask is not None:
        kept = kept & threshold_mask
    loss = torch.where(kept, objective.value(logprob), 0.0)
    weight = torch.where(kept, objective.weight(logprob), 0.0)
    return loss, prob, kept, weight, objective.power


def write_gradient(logits: Tensor, grad: Tensor, lse: Tensor, scale: Tensor, local_target: Tensor, owned: Tensor) -> None:
    """Pass 2 in torch: grad = scale * (softmax - onehot), chunk by chunk; `grad` may be `logits` itself."""
    n, v_local = logits.shape
    dtype = compute_dtype(logits)
    step = chunk_rows(v_local)
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
