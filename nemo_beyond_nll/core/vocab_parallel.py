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
Triton (`triton_kernels`, one program per row), used by default for CUDA logits when triton imports;
:mod:`.backends` chooses. The steps themselves are public functions in :mod:`.passes`.

Nothing here knows about Megatron; the group is any torch.distributed process group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from . import backends, passes
from .backends import resolve_backend
from .objectives import get_objective


@dataclass
class ObjectiveOutput:
    """Per-token results, each shaped like the target.

    loss: the objective's value, differentiable w.r.t. the logits, 0 where not kept.
    prob: the target probability, detached (0 at ignore_index).
    Both are fp32 (fp64 for fp64 logits) whatever the logits' dtype.
    kept: True where the token counts: not ignore_index and inside the threshold.
    power: adaptive_power's m for this call (0-d, detached), the same on every rank; None for
    objectives that do not depend on the batch.
    """

    loss: Tensor
    prob: Tensor
    kept: Tensor
    power: Optional[Tensor] = None

    def mean_over_kept(self) -> Tensor:
        """The paper's reduction: summed loss over the number of kept tokens (0 when none is kept)."""
        return self.loss.sum() / self.kept.sum().clamp(min=1)


class VocabParallelObjective(torch.autograd.Function):
    """The per-token objective over sharded logits; the steps are :mod:`.passes`' functions."""

    @staticmethod
    def forward(ctx, logits, target, objective, group, ignore_index, check_targets, inplace_backward, backend,
                check_finite=False):
        valid, local_target, owned = passes.localize_targets(
            target, group, logits.shape[1], ignore_index, check_targets
        )
        stats = backends.row_stats(logits, local_target, owned, backend)
        gathered = passes.gather_row_stats(stats, group)
        lse, target_logit = passes.merge_row_stats(gathered)
        if check_finite:
            passes.check_finite_rows(gathered, lse, target_logit, valid)
        loss, prob, kept, weight, power = passes.token_outputs(objective, valid, lse, target_logit)

        ctx.save_for_backward(logits, local_target, owned, lse, weight)
        ctx.inplace_backward = inplace_backward
        ctx.backend = backend
        ctx.backward_done = False
        ctx.mark_non_differentiable(prob, kept, *([] if power is None else [power]))
        return loss, prob, kept, power

    @staticmethod
    def backward(ctx, grad_loss, _grad_prob, _grad_kept, _grad_power):
        if ctx.inplace_backward and ctx.backward_done:
            raise RuntimeError(
                "vocab_parallel_objective: backward ran twice, but the first one overwrote the logits "
                "with their gradient (inplace_backward=True); use inplace_backward=False to retain the graph"
            )
        logits, local_target, owned, lse, weight = ctx.saved_tensors
        grad = logits if ctx.inplace_backward else torch.empty_like(logits)
        scale = grad_loss.to(weight.dtype) * weight
        backends.write_gradient(logits, grad, lse, scale, local_target, owned, ctx.backend)
        ctx.backward_done = True
        return grad, None, None, None, None, None, None, None, None


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
    check_finite: bool = False,
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
        check_finite: raise ``ValueError`` naming the first row whose logits hold NaN or +inf (or
            -inf at the target), on any rank's shard; off by default (costs a host sync, no
            collective). Without it such a row gives NaN loss and gradient, as Megatron's does.

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
    passes.require_integer_target(target)
    if inplace_backward is None:
        inplace_backward = logits.dtype != torch.float64
    v_local = logits.shape[-1]
    flat_logits = logits.reshape(-1, v_local)
    loss, prob, kept, power = VocabParallelObjective.apply(
        flat_logits,
        target.reshape(-1),
        objective,
        tp_group,
        ignore_index,
        check_targets,
        inplace_backward,
        resolve_backend(flat_logits, backend),
        check_finite,
    )
    shape = target.shape
    return ObjectiveOutput(loss.view(shape), prob.view(shape), kept.view(shape), power)
