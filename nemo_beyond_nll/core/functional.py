"""The loss as functions: per-token outputs with an optional loss mask, and their mean over kept tokens.

A token is kept when it is not ``ignore_index``, passes the objective's threshold and, when a
``loss_mask`` is given, is masked in. The reduction is the paper's: summed loss over kept tokens.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from .linear import vocab_parallel_linear_objective
from .vocab_parallel import ObjectiveOutput, vocab_parallel_objective


def apply_loss_mask(out: ObjectiveOutput, loss_mask: Optional[Tensor]) -> ObjectiveOutput:
    """`out` with tokens outside `loss_mask` dropped from `kept` (and their loss zeroed)."""
    if loss_mask is None:
        return out
    kept = out.kept & loss_mask.bool()
    return ObjectiveOutput(out.loss * kept, out.prob, kept, out.power)


def objective_loss(
    logits: Tensor, labels: Tensor, objective="nll", *, loss_mask: Optional[Tensor] = None, **options
) -> tuple[Tensor, ObjectiveOutput]:
    """(mean over kept tokens, per-token outputs) of `objective` on `logits` [..., V or V/tp].

    `options` go to :func:`~.vocab_parallel.vocab_parallel_objective` (tp_group, ignore_index, backend, ...).
    """
    out = apply_loss_mask(vocab_parallel_objective(logits, labels, objective, **options), loss_mask)
    return out.mean_over_kept(), out


def linear_objective_loss(
    hidden: Tensor, weight: Tensor, labels: Tensor, objective="nll", *, loss_mask: Optional[Tensor] = None, **options
) -> tuple[Tensor, ObjectiveOutput]:
    """As :func:`objective_loss` for the logits ``hidden @ weight.T``, without materialising them.

    `options` go to :func:`~.linear.vocab_parallel_linear_objective` (tp_group, chunk_vocab, ...).
    """
    out = apply_loss_mask(vocab_parallel_linear_objective(hidden, weight, labels, objective, **options), loss_mask)
    return out.mean_over_kept(), out
