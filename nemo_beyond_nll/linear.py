"""The output layer and the objective fused: hidden states and this rank's weight rows in, per-token loss out.

`vocab_parallel_linear_objective(hidden, weight_shard, target, objective)` equals
`vocab_parallel_objective(hidden @ weight_shard.T, target, objective)` but never holds more than one
chunk of tokens' logits:

1. forward: for each chunk of tokens, logits = hidden_chunk @ weight.T, reduced at once to this
   rank's per-row (max, sum-exp, target logit) and dropped; after the last chunk, the same single
   all-gather and merge as the unfused path give loss, prob, kept and the weight w(p);
2. backward: for each chunk, the logits are computed again, turned in place into
   upstream * w(p) * (softmax - onehot), and multiplied into grad_hidden (chunk rows) and
   grad_weight (accumulated over chunks).

Why recompute in backward rather than compute the gradients during forward: the loss is per token
and its upstream gradient (Megatron's loss mask / token count, any weighting) is only known in
backward. grad_hidden could be scaled per row afterwards, but grad_weight sums over tokens with
different upstream factors, so it needs the chunk's logits again; one extra matmul is the price of
not storing them.

With tensor parallelism the hidden states are replicated and each rank's grad_hidden is a partial
sum over its vocabulary slice; `reduce_hidden_grad` all-reduces it over the group, as Megatron's
ColumnParallelLinear does in its backward. Callers that already sit behind such a reduction (the
Megatron hook passes the input through Megatron's own copy/gather region) turn it off.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor

from .objectives import get_objective
from .vocab_parallel import ObjectiveOutput, _group_rank_and_size, _VocabParallelObjective, resolve_backend

# Default chunk: as many tokens as make about this many bytes of logits, but never fewer than
# MIN_CHUNK_TOKENS, below which the matmul re-reads the whole weight for too little work.
LOGITS_CHUNK_BYTES = 64 << 20
MIN_CHUNK_TOKENS = 64


def default_chunk_tokens(v_local: int, dtype: torch.dtype) -> int:
    element = torch.empty((), dtype=dtype).element_size()
    return max(MIN_CHUNK_TOKENS, LOGITS_CHUNK_BYTES // max(v_local * element, 1))


class _VocabParallelLinearObjective(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, target, objective, group, ignore_index, check_targets, chunk,
                reduce_hidden_grad, backend):
        steps = _VocabParallelObjective
        n, v_local = hidden.shape[0], weight.shape[0]
        valid, local_target, owned = steps.localize_targets(target, group, v_local, ignore_index, check_targets)
        stats_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        stats = torch.empty(3, n, dtype=stats_dtype, device=hidden.device)
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            logits = hidden[rows] @ weight.t()
            stats[:, rows] = steps.local_row_stats(logits, local_target[rows], owned[rows], backend)
        lse, target_logit = steps.merge_row_stats(steps.gather_row_stats(stats, group))
        loss, prob, kept, token_weight = steps.token_outputs(objective, valid, lse, target_logit)

        ctx.save_for_backward(hidden, weight, local_target, owned, lse, token_weight)
        ctx.group, ctx.chunk, ctx.backend = group, chunk, backend
        ctx.reduce_hidden_grad = reduce_hidden_grad
        ctx.mark_non_differentiable(prob, kept)
        return loss, prob, kept

    @staticmethod
    def backward(ctx, grad_loss, _grad_prob, _grad_kept):
        hidden, weight, local_target, owned, lse, token_weight = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        scale = grad_loss.to(token_weight.dtype) * token_weight
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        # Accumulated in the weight's dtype (one rounding per chunk for bf16), as a second
        # fp32 weight-sized buffer would cost more memory than the logits this path saves.
        grad_weight = torch.zeros_like(weight) if need_weight else None
        n = hidden.shape[0]
        for start in range(0, n, ctx.chunk):
            rows = slice(start, min(start + ctx.chunk, n))
            grad_logits = hidden[rows] @ weight.t()
            _VocabParallelObjective.write_gradient(
                grad_logits, grad_logits, lse[rows], scale[rows], local_target[rows], owned[rows], ctx.backend
            )
            if need_hidden:
                torch.mm(grad_logits, weight, out=grad_hidden[rows])
            if need_weight:
                grad_weight.addmm_(grad_logits.t(), hidden[rows])
        if need_hidden and ctx.reduce_hidden_grad and _group_rank_and_size(ctx.group)[1] > 1:
            dist.all_reduce(grad_hidden, group=ctx.group)
        return grad_hidden, grad_weight, None, None, None, None, None, None, None, None


def vocab_parallel_linear_objective(
    hidden: Tensor,
    weight_shard: Tensor,
    target: Tensor,
    objective,
    *,
    tp_group=None,
    chunk_tokens: Optional[int] = None,
    ignore_index: int = -100,
    check_targets: bool = True,
    reduce_hidden_grad: bool = True,
    backend: Optional[str] = None,
) -> ObjectiveOutput:
    """Per-token objective of the logits `hidden @ weight_shard.T`, without materialising them.

    Args:
        hidden: ``[..., H]`` hidden states, the same on every rank of ``tp_group``.
        weight_shard: ``[V_local, H]`` this rank's rows of the output layer (Megatron's layout:
            rank r holds token ids ``[r * V_local, (r + 1) * V_local)``).
        target: ``[...]`` global token ids.
        objective: an :class:`Objective` or a name accepted by :func:`get_objective`.
        tp_group: the tensor-parallel process group the vocabulary is split over.
        chunk_tokens: tokens whose logits exist at once; default about 64 MiB of logits, at
            least 64 tokens. Larger chunks mean fewer, bigger matmuls and more memory.
        ignore_index, check_targets, backend: as for :func:`vocab_parallel_objective`.
        reduce_hidden_grad: all-reduce the hidden states' gradient over ``tp_group`` (each rank
            holds only its vocabulary slice's share). Turn it off only when the caller reduces it,
            as Megatron's ColumnParallelLinear input region does.

    Returns:
        :class:`ObjectiveOutput` as ``vocab_parallel_objective(hidden @ weight_shard.T, ...)``.
    """
    objective = get_objective(objective)
    if hidden.dim() < 1 or weight_shard.dim() != 2 or hidden.shape[-1] != weight_shard.shape[1]:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} and weight_shard {tuple(weight_shard.shape)} disagree: "
            "weight_shard must be [V_local, H] with H the last dimension of hidden"
        )
    if hidden.shape[:-1] != target.shape:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} and target {tuple(target.shape)} disagree: "
            "hidden must be target's shape plus a hidden dimension"
        )
    if not hidden.is_floating_point() or hidden.dtype != weight_shard.dtype:
        raise ValueError(
            f"hidden and weight_shard must share one floating dtype, got {hidden.dtype} and {weight_shard.dtype}"
        )
    v_local = weight_shard.shape[0]
    if chunk_tokens is None:
        chunk_tokens = default_chunk_tokens(v_local, hidden.dtype)
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be a positive integer, got {chunk_tokens!r}")
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    # The backend is chosen for the chunk logits, which are contiguous and on hidden's device.
    probe = torch.empty(0, v_local, dtype=hidden.dtype, device=hidden.device)
    loss, prob, kept = _VocabParallelLinearObjective.apply(
        flat_hidden,
        weight_shard,
        target.reshape(-1),
        objective,
        tp_group,
        ignore_index,
        check_targets,
        chunk_tokens,
        reduce_hidden_grad,
        resolve_backend(probe, backend),
    )
    shape = target.shape
    return ObjectiveOutput(loss.view(shape), prob.view(shape), kept.view(shape))
