"""The objectives as a NeMo AutoModel loss:
``loss_fn: {_target_: nemo_beyond_nll.automodel.AutoModelObjectiveLoss}``.

The objective is chosen with ``objective`` and ``objective_args``, as on every loss class of the
package (the recipe keys ``model.loss`` and ``model.loss_args`` elsewhere): AutoModel builds a YAML
``loss_fn`` node through ``build_loss_config(loss, **kwargs)``, whose first parameter is named
``loss``, so a keyword of that name could not reach the loss's constructor.

NeMo AutoModel's fine-tuning recipes build ``loss_fn`` from YAML and call it as
``loss_fn(logits, labels, mask=None, num_label_tokens=None, loss_weights=None)`` once per
micro-batch, with ``num_label_tokens`` the step's supervised-token count summed over every
micro-batch and every data-parallel rank; each micro-batch's loss is its summed token loss divided
by that count, and the recipe sums the micro-batches (AutoModel's ``MaskedCrossEntropy`` contract).
:class:`AutoModelObjectiveLoss` keeps that contract for every objective of :mod:`.core.objectives`;
with ``objective="nll"`` it gives ``MaskedCrossEntropy``'s values and gradients.

Threshold objectives (``neg_p_threshold``, ``nll_threshold``, the reference ``OnlyTopP-q``, ...)
reduce over *kept* tokens in the paper, and which tokens are kept is only known once a micro-batch's
probabilities are. The rule here, for ``reduction="sum"`` with ``num_label_tokens``: a micro-batch
with supervised count N, kept count K (both summed over ``kept_count_group``: one all-reduce of three
numbers per micro-batch, threshold objectives only) and summed kept loss S on this rank returns

    S * N / (K * num_label_tokens)

that is, its kept-token mean weighted by its share of the step's supervised tokens. With one
micro-batch per step this is exactly the paper's mean over the step's kept tokens across all
data-parallel ranks; with gradient accumulation it weights each micro-batch's kept mean by its
supervised tokens (the paper's mean when the kept fraction is the same in every micro-batch). For
objectives without a threshold K = N and no collective runs: S / num_label_tokens, as
``MaskedCrossEntropy``.

``kept_count_group``: ``"world"`` (default) all-reduces over the default process group when one is
initialised with more than one rank. Because the rule uses K/N only, ranks that hold the same
tokens (tensor-parallel peers) scale both counts alike and change nothing, and context-parallel
ranks add their sequence slices, so the world is right for data, FSDP, tensor and context
parallelism. Under pipeline parallelism only the last stage calls the loss: pass that stage's
data-parallel group, or ``"local"`` (no collective: this rank's K/N). The fused class uses the
recipe's ``grad_reduce_group`` (data x context parallel) when the recipe passes one.

Tensor parallelism: logits that are a DTensor sharded on the vocabulary dimension (AutoModel's TP
plans with ``use_local_output=False``) are never gathered: the objective runs on ``to_local()``
with the mesh's tensor-parallel group (one all-gather of per-row statistics), exactly as on the
whole vocabulary, and the gradient flows back to the DTensor. Other DTensor logits are gathered
with ``full_tensor()``, as ``MaskedCrossEntropy`` does.

Metrics: the recipe keeps only the scalar, so each call stores ``last_metrics`` (detached tensors,
no host sync): ``kept_fraction`` (K/N), ``mean_prob`` (mean target probability over supervised
tokens), ``kept_tokens`` and ``label_tokens``, over ``kept_count_group`` when the counts were
all-reduced, else this rank's; for ``adaptive_power`` also ``power``, the call's m (this rank's
tokens). :meth:`AutoModelObjectiveLoss.loss_and_metrics` returns them instead.

The fused output layer, ``AutoModelLinearObjectiveLoss``, takes AutoModel's
``FusedLinearCrossEntropy`` call (hidden states, labels, LM-head weight) and runs the project's fused
linear path: no logits tensor. AutoModel's recipe picks the hidden-states route by
``isinstance(loss_fn, LinearCrossEntropy)``, so that class subclasses AutoModel's
``LinearCrossEntropy`` and is built on first access (importing ``nemo_automodel`` then); everything
else here imports without nemo_automodel.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.distributed as dist
from torch import Tensor

from .core.linear import vocab_parallel_linear_objective
from .core.objectives import get_objective
from .core.vocab_parallel import ObjectiveOutput, vocab_parallel_objective

DATASET_IGNORE_INDEX = -100  # the label AutoModel's datasets put on unsupervised positions
REDUCTIONS = ("sum", "mean", "none")
KEPT_COUNT_GROUPS = ("world", "local")


def vocab_shard_group(logits) -> Optional[object]:
    """The process group a DTensor's last dimension is sharded over, or None when it is not sharded there.

    Every other mesh dimension must replicate the logits; anything else is refused rather than guessed.
    """
    from torch.distributed.tensor import Replicate, Shard

    last = logits.ndim - 1
    sharded = [i for i, p in enumerate(logits.placements) if isinstance(p, Shard) and p.dim in (-1, last)]
    if not sharded:
        return None
    others = [p for i, p in enumerate(logits.placements) if i != sharded[0]]
    if len(sharded) > 1 or not all(isinstance(p, Replicate) for p in others):
        raise ValueError(
            f"logits placements {logits.placements}: only a vocabulary shard over one mesh dimension "
            "(replicated over the others) is supported"
        )
    return logits.device_mesh.get_group(mesh_dim=sharded[0])


def is_dtensor(x) -> bool:
    return type(x).__name__ == "DTensor" and hasattr(x, "to_local")


class AutoModelObjectiveLoss(torch.nn.Module):
    """A probability objective with AutoModel's ``MaskedCrossEntropy`` call and reduction.

    Args:
        objective: objective name (canonical or the paper's reference name), default ``nll``.
        objective_args: that objective's arguments, e.g. ``{"threshold": 0.1}``.
        ignore_index: label with no loss (AutoModel's dataset padding -100 is mapped to it).
        reduction: ``"sum"`` (AutoModel's; divided by ``num_label_tokens`` when given, with the
            kept-token rule of the module docstring for threshold objectives), ``"mean"`` (mean over
            this call's kept tokens, 0 when none) or ``"none"`` (per-token loss, flattened).
        fp32_upcast: accepted for AutoModel's signature. The objective's softmax always runs in
            fp32 over row chunks, without an fp32 copy of the logits, so both values give
            ``MaskedCrossEntropy(fp32_upcast=True)``'s numbers.
        kept_count_group: ``"world"``, ``"local"`` or a process group: where a threshold
            objective's kept and supervised counts are summed (see the module docstring).
        backend: ``"torch"`` or ``"triton"`` for the two passes; default chosen by the device.
        inplace_backward: write the logits' gradient into their own storage (no extra buffer).
            Off by default: the logits may be saved by another op (e.g. logit soft-capping).

    ``forward`` returns the scalar (or per-token) loss and stores ``last_metrics``.
    """

    def __init__(
        self,
        objective: str = "nll",
        objective_args: Optional[dict] = None,
        ignore_index: int = -100,
        reduction: str = "sum",
        fp32_upcast: bool = True,
        kept_count_group: Union[str, object] = "world",
        backend: Optional[str] = None,
        inplace_backward: bool = False,
    ):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if isinstance(kept_count_group, str) and kept_count_group not in KEPT_COUNT_GROUPS:
            raise ValueError(f"kept_count_group must be one of {KEPT_COUNT_GROUPS} or a process group, "
                             f"got {kept_count_group!r}")
        self.objective = get_objective(objective, **dict(objective_args or {}))
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.fp32_upcast = fp32_upcast
        self.kept_count_group = kept_count_group
        self.backend = backend
        self.inplace_backward = inplace_backward
        self.last_metrics: Optional[dict] = None

    def extra_repr(self) -> str:
        return f"{self.objective}, reduction={self.reduction!r}, ignore_index={self.ignore_index}"

    # -- the labels as the objective sees them -------------------------------------------------

    def prepare_labels(self, labels: Tensor, device, mask: Optional[Tensor]) -> Tensor:
        """A new tensor: dataset padding -> ignore_index, masked-out positions -> ignore_index."""
        if is_dtensor(labels):
            labels = labels.full_tensor()
        labels = labels.to(device)
        if self.ignore_index != DATASET_IGNORE_INDEX:
            labels = labels.masked_fill(labels == DATASET_IGNORE_INDEX, self.ignore_index)
        if mask is not None:
            labels = labels.masked_fill(mask.to(device).reshape(labels.shape) == 0, self.ignore_index)
        return labels

    def per_token(self, logits: Tensor, labels: Tensor, mask: Optional[Tensor] = None) -> tuple[ObjectiveOutput, Tensor]:
        """(per-token loss, prob and kept, supervised mask), shaped like ``labels``, for plain or DTensor logits."""
        tp_group = None
        if is_dtensor(logits):
            tp_group = vocab_shard_group(logits)
            logits = logits.to_local() if tp_group is not None else logits.full_tensor()
        labels = self.prepare_labels(labels, logits.device, mask)
        out = vocab_parallel_objective(
            logits, labels, self.objective, tp_group=tp_group, ignore_index=self.ignore_index,
            inplace_backward=self.inplace_backward, backend=self.backend,
        )
        return out, labels != self.ignore_index

    # -- the reduction ----------------------------------------------------------------------

    def resolve_group(self, override=None):
        group = override if override is not None else self.kept_count_group
        if group == "local":
            return None
        if group == "world":
            if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
                return None
            return dist.group.WORLD
        return group

    def reduce(
        self,
        out: ObjectiveOutput,
        valid: Tensor,
        num_label_tokens=None,
        loss_weights: Optional[Tensor] = None,
        group=None,
    ) -> tuple[Tensor, dict]:
        """(loss, metrics) from per-token outputs and the supervised mask, under AutoModel's reduction
        (module docstring); ``group`` overrides ``kept_count_group`` for this call."""
        loss = out.loss
        if loss_weights is not None:
            if self.reduction != "sum":
                raise ValueError("loss_weights is only supported when reduction is 'sum'")
            if tuple(loss_weights.shape) != tuple(loss.shape):
                raise ValueError(f"loss_weights.shape must match labels.shape, got {tuple(loss_weights.shape)} "
                                 f"and {tuple(loss.shape)}")
            loss = loss * loss_weights.to(device=loss.device, dtype=loss.dtype)
        if num_label_tokens is not None and self.reduction != "sum":
            raise ValueError("num_label_tokens is only supported when reduction is 'sum'")

        counts = torch.stack([
            out.kept.sum(), valid.sum(), (out.prob * valid).sum(),
        ]).to(torch.float64)
        collective = (self.objective.is_thresholded and self.reduction == "sum" and num_label_tokens is not None)
        group = self.resolve_group(group) if collective else None
        if group is not None:
            dist.all_reduce(counts, group=group)
        kept, labelled, prob_sum = counts.unbind()
        metrics = {
            "kept_fraction": (kept / labelled.clamp(min=1)).float(),
            "mean_prob": (prob_sum / labelled.clamp(min=1)).float(),
            "kept_tokens": kept.long(),
            "label_tokens": labelled.long(),
        }
        if out.power is not None:
            metrics["power"] = out.power.float()  # adaptive_power's m of this call (this rank's tokens)

        if self.reduction == "none":
            return loss.reshape(-1), metrics
        total = loss.sum()
        if self.reduction == "mean":
            return total / out.kept.sum().clamp(min=1).to(total.dtype), metrics
        if num_label_tokens is None:
            return total, metrics
        if num_label_tokens == 0:
            return total * 0.0, metrics
        if collective:
            # kept mean of this micro-batch, weighted by its share of the step's supervised tokens
            scale = torch.where(kept > 0, labelled / (kept.clamp(min=1) * num_label_tokens), 0.0)
            return total * scale.to(total.dtype), metrics
        return total / num_label_tokens, metrics

    def loss_and_metrics(
        self, logits: Tensor, labels: Tensor, mask: Optional[Tensor] = None, num_label_tokens=None,
        loss_weights: Optional[Tensor] = None,
    ) -> tuple[Tensor, dict]:
        """As ``forward``, returning ``(loss, metrics)`` instead of storing the metrics."""
        out, valid = self.per_token(logits, labels, mask)
        return self.reduce(out, valid, num_label_tokens, loss_weights)

    def forward(
        self, logits: Tensor, labels: Tensor, mask: Optional[Tensor] = None, num_label_tokens=None,
        loss_weights: Optional[Tensor] = None,
    ) -> Tensor:
        loss, self.last_metrics = self.loss_and_metrics(logits, labels, mask, num_label_tokens, loss_weights)
        return loss


class AutoModelLinearObjectiveLossBase(AutoModelObjectiveLoss):
    """The output layer fused with the objective, with AutoModel's ``FusedLinearCrossEntropy`` call:
    ``forward(hidden_states, labels, lm_weight, num_label_tokens=None, grad_reduce_group=None,
    loss_weights=None)`` equals ``AutoModelObjectiveLoss()(hidden_states @ lm_weight.T, labels, ...)``
    without a logits tensor (the project's fused linear path, in vocabulary blocks of ``chunk_vocab``).

    ``lm_weight`` is the whole ``[V, H]`` head: a DTensor (FSDP) is gathered by AutoModel's
    ``LinearCrossEntropy.materialize_lm_weight`` with its gradient contract, as for
    ``FusedLinearCrossEntropy``; tensor-parallel heads are refused there, as for AutoModel's own.
    ``grad_reduce_group`` (the recipe's data x context parallel group) is also where a threshold
    objective's kept count is summed. Use ``AutoModelLinearObjectiveLoss`` (this class with
    AutoModel's ``LinearCrossEntropy`` base, so that the recipe routes hidden states to it).
    """

    def __init__(
        self,
        objective: str = "nll",
        objective_args: Optional[dict] = None,
        ignore_index: int = -100,
        reduction: str = "sum",
        kept_count_group: Union[str, object] = "world",
        backend: Optional[str] = None,
        chunk_vocab: Optional[int] = None,
    ):
        super().__init__(objective, objective_args, ignore_index, reduction, kept_count_group=kept_count_group,
                         backend=backend)
        self.chunk_vocab = chunk_vocab

    def forward(
        self,
        hidden_states: Tensor,
        labels: Tensor,
        lm_weight: Tensor,
        num_label_tokens=None,
        grad_reduce_group=None,
        loss_weights: Optional[Tensor] = None,
    ) -> Tensor:
        if is_dtensor(lm_weight):
            materialize = getattr(self, "materialize_lm_weight", None)
            if materialize is None:
                raise TypeError("a DTensor lm_weight needs nemo_automodel's LinearCrossEntropy: "
                                "use AutoModelLinearObjectiveLoss with nemo_automodel installed")
            lm_weight = materialize(lm_weight, grad_reduce_group=grad_reduce_group)
        if is_dtensor(hidden_states):
            hidden_states = hidden_states.full_tensor()
        labels = self.prepare_labels(labels, hidden_states.device, None)
        out = vocab_parallel_linear_objective(
            hidden_states, lm_weight.to(hidden_states.dtype), labels, self.objective, chunk_vocab=self.chunk_vocab,
            ignore_index=self.ignore_index, backend=self.backend,
        )
        loss, self.last_metrics = self.reduce(
            out, labels != self.ignore_index, num_label_tokens, loss_weights, group=grad_reduce_group
        )
        return loss


def linear_loss_class() -> type:
    """``AutoModelLinearObjectiveLossBase`` with AutoModel's ``LinearCrossEntropy`` as a second base
    (imports nemo_automodel)."""
    from nemo_automodel.components.loss.linear_ce_base import LinearCrossEntropy

    return type("AutoModelLinearObjectiveLoss", (AutoModelLinearObjectiveLossBase, LinearCrossEntropy), {
        "__module__": __name__,
        "__qualname__": "AutoModelLinearObjectiveLoss",
        "__doc__": AutoModelLinearObjectiveLossBase.__doc__,
    })


_LAZY = {}


def __getattr__(name):
    # Built on first access, so that importing this module never imports nemo_automodel.
    if name == "AutoModelLinearObjectiveLoss":
        if name not in _LAZY:
            _LAZY[name] = linear_loss_class()
        return _LAZY[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# AutoModelLinearObjectiveLoss is left out so that `import *` does not import nemo_automodel.
__all__ = ["AutoModelLinearObjectiveLossBase", "AutoModelObjectiveLoss", "vocab_shard_group"]
