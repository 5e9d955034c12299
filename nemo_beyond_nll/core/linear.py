"""The output layer and the objective fused: hidden states and this rank's weight rows in, per-token loss out.

`vocab_parallel_linear_objective(hidden, weight_shard, target, objective)` equals
`vocab_parallel_objective(hidden @ weight_shard.T, target, objective)` but never holds more than one
block of logits, [all tokens, chunk_vocab columns]:

1. forward: for each block of the vocabulary, logits = hidden @ weight[block].T, reduced at once to
   per-row (max, sum-exp, target logit) and dropped; the blocks' triples combine into this rank's
   triple, and the same single all-gather and merge as the unfused path give loss, prob, kept and w(p);
2. backward: for each block, the logits are computed again and turned in place into
   upstream * w(p) * (softmax - onehot); grad_weight[block] is one matmul with all tokens (written
   once, as in the unfused path) and grad_hidden accumulates over blocks.

Why blocks of the vocabulary rather than chunks of tokens: the weight [V_local, H] is much larger
than the hidden states [N, H] of one micro-batch. Token chunks re-read the whole weight, and
read-modify-write the whole weight gradient, once per chunk; on CPU at N=2048, H=1024, V=131072 that
made the fused step 1.85x the unfused one, against 1.2x-1.3x with vocabulary blocks.

Why recompute in backward rather than compute the gradients during forward: the loss is per token
and its upstream gradient (Megatron's loss mask / token count, any weighting) is only known in
backward; grad_weight sums over tokens with different upstream factors, so it needs the logits
again. One extra matmul is the price of not storing them.

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
from . import backends, passes
from .backends import resolve_backend
from .vocab_parallel import ObjectiveOutput

# Default block: as many vocabulary columns as make about this many bytes of logits, but never
# fewer than MIN_CHUNK_VOCAB, below which the matmuls get too thin to run at full speed. On CPU a
# block that stays in cache between its matmul and its softmax pass is faster (measured: 16 MiB
# gave 1.22x the unfused time, 64 MiB 1.31x); on GPU larger blocks mean fewer launches.
LOGITS_CHUNK_BYTES = {"cuda": 64 << 20, "cpu": 16 << 20}
MIN_CHUNK_VOCAB = 256


def default_chunk_vocab(n_tokens: int, dtype: torch.dtype, device=torch.device("cpu")) -> int:
    budget = LOGITS_CHUNK_BYTES.get(torch.device(device).type, LOGITS_CHUNK_BYTES["cuda"])
    element = torch.empty((), dtype=dtype).element_size()
    return max(MIN_CHUNK_VOCAB, budget // max(n_tokens * element, 1))


def _blocks(v_local: int, chunk: int):
    for start in range(0, v_local, chunk):
        yield start, min(start + chunk, v_local)


def _block_targets(local_target: Tensor, owned: Tensor, start: int, stop: int) -> tuple[Tensor, Tensor]:
    """The target's column inside vocabulary block [start, stop), and which rows own it there."""
    in_block = owned & (local_target >= start) & (local_target < stop)
    return torch.where(in_block, local_target - start, 0), in_block


class VocabParallelLinearObjective(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, target, objective, group, ignore_index, check_targets, chunk,
                reduce_hidden_grad, backend):
        valid, local_target, owned = passes.localize_targets(
            target, group, weight.shape[0], ignore_index, check_targets
        )
        block_stats = []
        for start, stop in _blocks(weight.shape[0], chunk):
            logits = hidden @ weight[start:stop].t()
            block_target, in_block = _block_targets(local_target, owned, start, stop)
            block_stats.append(backends.row_stats(logits, block_target, in_block, backend))
            del logits
        stats = passes.combine_row_stats(torch.stack(block_stats))
        lse, target_logit = passes.merge_row_stats(passes.gather_row_stats(stats, group))
        loss, prob, kept, token_weight, power = passes.token_outputs(objective, valid, lse, target_logit)

        ctx.save_for_backward(hidden, weight, local_target, owned, lse, token_weight)
        ctx.group, ctx.chunk, ctx.backend = group, chunk, backend
        ctx.reduce_hidden_grad = reduce_hidden_grad
        ctx.mark_non_differentiable(prob, kept, *([] if power is None else [power]))
        return loss, prob, kept, power

    @staticmethod
    def backward(ctx, grad_loss, _grad_prob, _grad_kept, _grad_power):
        hidden, weight, local_target, owned, lse, token_weight = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        scale = grad_loss.to(token_weight.dtype) * token_weight
        grad_weight = torch.empty_like(weight) if need_weight else None
        # grad_hidden sums one product per block: in fp32 for bf16/fp16, so that it is rounded once.
        acc_dtype = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        grad_hidden = torch.zeros(hidden.shape, dtype=acc_dtype, device=hidden.device) if need_hidden else None
        for start, stop in _blocks(weight.shape[0], ctx.chunk):
            block_weight = weight[start:stop]
            grad_logits = hidden @ block_weight.t()
            block_target, in_block = _block_targets(local_target, owned, start, stop)
            backends.write_gradient(
                grad_logits, grad_logits, lse, scale, block_target, in_block, ctx.backend
            )
            if need_weight:
                torch.mm(grad_logits.t(), hidden, out=grad_weight[start:stop])
            if need_hidden:
                if grad_hidden.dtype == grad_logits.dtype:
                    grad_hidden.addmm_(grad_logits, block_weight)
                else:
                    grad_hidden += grad_logits @ block_weight
            del grad_logits
        if need_hidden:
            grad_hidden = grad_hidden.to(hidden.dtype)
            if ctx.reduce_hidden_grad and passes.group_rank_and_size(ctx.group)[1] > 1:
                dist.all_reduce(grad_hidden, group=ctx.group)
        return grad_hidden, grad_weight, None, None, None, None, None, None, None, None


def vocab_parallel_linear_objective(
    hidden: Tensor,
    weight_shard: Tensor,
    target: Tensor,
    objective,
    *,
    tp_group=None,
    chunk_vocab: Optional[int] = None,
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
        chunk_vocab: vocabulary columns whose logits (for all tokens) exist at once; default:
            about 64 MiB of logits on GPU, 16 MiB on CPU, at least 256 columns. Larger blocks
            mean fewer, bigger matmuls and more memory.
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
    passes.require_integer_target(target)
    v_local = weight_shard.shape[0]
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    if chunk_vocab is None:
        chunk_vocab = default_chunk_vocab(flat_hidden.shape[0], hidden.dtype, hidden.device)
    if isinstance(chunk_vocab, bool) or not isinstance(chunk_vocab, int) or chunk_vocab < 1:
        raise ValueError(f"chunk_vocab must be a positive integer, got {chunk_vocab!r}")
    # The backend is chosen for the block logits, which are contiguous and on hidden's device.
    probe = torch.empty(0, v_local, dtype=hidden.dtype, device=hidden.device)
    loss, prob, kept, power = VocabParallelLinearObjective.apply(
        flat_hidden,
        weight_shard,
        target.reshape(-1),
        objective,
        tp_group,
        ignore_index,
        check_targets,
        chunk_vocab,
        reduce_hidden_grad,
        resolve_backend(probe, backend),
    )
    shape = target.shape
    return ObjectiveOutput(loss.view(shape), prob.view(shape), kept.view(shape), power)
