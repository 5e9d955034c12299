"""The loss as plain ``torch.nn.Module``s: ``ObjectiveLoss`` over logits, ``LinearObjectiveLoss`` fused
with the output layer.

Both return the mean over kept tokens from ``forward``; ``per_token`` gives the per-token loss,
probability and kept mask (for metrics) as a return value. The NeMo loss
(:mod:`nemo_beyond_nll.nemo`) is a thin subclass that adds NeMo's neural types and config building.
Every loss class of the package takes the objective as ``objective`` and ``objective_args``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .functional import apply_loss_mask
from .linear import vocab_parallel_linear_objective
from .objectives import get_objective
from .vocab_parallel import ObjectiveOutput, vocab_parallel_objective


class ObjectiveLoss(torch.nn.Module):
    """Mean of a probability objective over kept tokens (not ignored, not masked, inside the threshold).

    Args:
        objective: objective name (canonical or the paper's reference name), default ``nll``.
        objective_args: that objective's arguments, e.g. ``{"threshold": 0.1}``.
        ignore_index: label id with no loss.
        tp_group: tensor-parallel group when the logits are this rank's vocabulary slice.
        backend: "torch" or "triton" for the two passes; default chosen by the logits' device.
        check_finite: raise ``ValueError`` naming the first row of NaN/inf logits (see
            :func:`vocab_parallel_objective`); off by default.
    """

    def __init__(
        self, objective: str = "nll", objective_args: Optional[dict] = None, ignore_index: int = -100, tp_group=None,
        backend: Optional[str] = None, check_finite: bool = False,
    ):
        super().__init__()
        self.objective = get_objective(objective, **dict(objective_args or {}))
        self.ignore_index = ignore_index
        self.tp_group = tp_group
        self.backend = backend
        self.check_finite = check_finite

    def per_token(self, logits: Tensor, labels: Tensor, loss_mask: Optional[Tensor] = None) -> ObjectiveOutput:
        out = vocab_parallel_objective(
            logits, labels, self.objective, tp_group=self.tp_group, ignore_index=self.ignore_index,
            backend=self.backend, check_finite=self.check_finite,
        )
        return apply_loss_mask(out, loss_mask)

    def forward(self, logits: Tensor, labels: Tensor, loss_mask: Optional[Tensor] = None) -> Tensor:
        return self.per_token(logits, labels, loss_mask).mean_over_kept()

    def extra_repr(self) -> str:
        return str(self.objective)


class LinearObjectiveLoss(ObjectiveLoss):
    """The output layer and the objective fused: ``forward(hidden, weight, labels)`` equals
    ``ObjectiveLoss()(hidden @ weight.T, labels)`` without a logits tensor.

    ``weight`` is ``[V or V/tp, H]`` (this rank's rows); ``chunk_vocab`` bounds the logits that
    exist at once (see :func:`~.linear.vocab_parallel_linear_objective`).
    """

    def __init__(self, objective: str = "nll", objective_args: Optional[dict] = None, ignore_index: int = -100,
                 tp_group=None, backend: Optional[str] = None, chunk_vocab: Optional[int] = None):
        super().__init__(objective, objective_args, ignore_index, tp_group, backend)
        self.chunk_vocab = chunk_vocab

    def per_token(self, hidden: Tensor, weight: Tensor, labels: Tensor, loss_mask: Optional[Tensor] = None) -> ObjectiveOutput:
        out = vocab_parallel_linear_objective(
            hidden, weight, labels, self.objective, tp_group=self.tp_group, chunk_vocab=self.chunk_vocab,
            ignore_index=self.ignore_index, backend=self.backend,
        )
        return apply_loss_mask(out, loss_mask)

    def forward(self, hidden: Tensor, weight: Tensor, labels: Tensor, loss_mask: Optional[Tensor] = None) -> Tensor:
        return self.per_token(hidden, weight, labels, loss_mask).mean_over_kept()
