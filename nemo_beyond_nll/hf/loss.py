"""The objective as a Hugging Face ``compute_loss_func``: ``Trainer(..., compute_loss_func=HFObjectiveLoss("neg_p"))``.

``transformers.Trainer`` (and TRL's ``SFTTrainer``) call ``compute_loss_func(outputs, labels,
num_items_in_batch=...)`` once per micro-batch, with the labels the collator made (not shifted, -100
where there is no loss) and ``num_items_in_batch`` the number of supervised next-token positions of
the whole optimizer step: every accumulated micro-batch, every device when
``average_tokens_across_devices`` is on. The Trainer then backpropagates each micro-batch's loss as
is, so the step's gradient is that of (summed token loss) / ``num_items_in_batch``.

:class:`HFObjectiveLoss` keeps that contract for every objective of :mod:`nemo_beyond_nll.core.objectives`:

- the label shift and ignore index are transformers' ``ForCausalLMLoss``'s: the labels are padded
  with -100 on the right and shifted left by one, so logit t predicts label t + 1 and the last
  position predicts nothing; ``shift_labels`` (context-parallel collators) are used as given;
- the reduction is NeMo AutoModel's ``num_label_tokens`` contract, which is the same one, through
  :class:`nemo_beyond_nll.automodel.AutoModelObjectiveLoss`: objectives without a threshold give
  summed loss / ``num_items_in_batch`` (``nll`` is then the Trainer's default loss, value and
  gradient); threshold objectives give each micro-batch's mean over its *kept* tokens, weighted by
  its share of the step's supervised tokens (see that class). Why not divide by the step's kept
  count, as Megatron does: the Trainer runs backward per micro-batch, and which tokens a threshold
  keeps is known only after each micro-batch's forward, so the step's kept count does not exist yet
  when the first backward runs. With one micro-batch per step the rule is exactly the mean over the
  step's kept tokens on all ranks (the paper's reduction, and Megatron's); under accumulation it
  weights each micro-batch's kept mean by its supervised tokens. Without ``num_items_in_batch`` the
  loss is the mean over this call's kept tokens, as ``ForCausalLMLoss`` takes the mean then.

Metrics: each training call adds its supervised tokens, kept tokens and summed target probability
to running sums (detached tensors, no host sync); :meth:`HFObjectiveLoss.pop_metrics` turns them into
``mean_prob`` and ``kept_fraction`` since the last log, summed over the default process group when
one is initialised. Calls without gradients (evaluation) go to separate sums, logged as
``eval_mean_prob`` and ``eval_kept_fraction``. :meth:`HFObjectiveLoss.callback` gives the
``TrainerCallback`` that adds them to the Trainer's logs.

Nothing here imports transformers.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ..automodel import AutoModelObjectiveLoss, is_dtensor
from ..core.linear import vocab_parallel_linear_objective

IGNORE_INDEX = -100  # transformers' label for "no loss here"
TRAIN, EVAL = "train", "eval"


def shift_labels(labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """The next-token targets of ``labels`` [..., S], as ``ForCausalLMLoss`` makes them: position t gets
    label t + 1, the last position ``ignore_index``."""
    return F.pad(labels, (0, 1), value=ignore_index)[..., 1:]


def logits_of(outputs) -> Tensor:
    """The logits of a model's output: a ``ModelOutput`` or dict with ``logits``, or a tuple whose first
    item is them (the Trainer removes the labels before the forward, so the model returns no loss)."""
    logits = outputs.get("logits") if isinstance(outputs, dict) else getattr(outputs, "logits", None)
    if logits is None and isinstance(outputs, (tuple, list)) and outputs:
        logits = outputs[0]
    if not isinstance(logits, Tensor) and not is_dtensor(logits):
        raise TypeError(f"cannot find the logits in the model's output of type {type(outputs).__name__}")
    return logits


class MetricSums:
    """Running sums of (kept tokens, supervised tokens, summed target probability), on the loss's device."""

    def __init__(self):
        self.sums: Optional[Tensor] = None

    def add(self, kept: Tensor, valid: Tensor, prob: Tensor) -> None:
        counts = torch.stack([kept.sum(), valid.sum(), (prob * valid).sum()]).detach().to(torch.float64)
        self.sums = counts if self.sums is None else self.sums + counts

    def pop(self) -> Optional[dict]:
        """``{"mean_prob", "kept_fraction"}`` since the last pop (None when nothing was added), summed over
        the default process group when one is initialised: every rank must call it together."""
        sums, self.sums = self.sums, None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            if sums is None:  # a rank with no call still joins the collective
                device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
                sums = torch.zeros(3, dtype=torch.float64, device=device)
            sums = sums.clone()
            dist.all_reduce(sums)
        if sums is None or sums[1] == 0:
            return None
        kept, labelled, prob_sum = sums.tolist()
        return {"mean_prob": prob_sum / max(labelled, 1.0), "kept_fraction": kept / max(labelled, 1.0)}


class HFObjectiveLoss:
    """A probability objective as a ``transformers.Trainer`` / TRL ``compute_loss_func``.

    Args:
        objective: objective name, canonical or the paper's reference name (``"neg_p"``,
            ``"OnlyTopP-0.1"``), default ``nll``.
        objective_args: the objective's arguments, e.g. ``{"threshold": 0.1}``.
        ignore_index: label with no loss; -100 as in transformers.
        kept_count_group: where a threshold objective's kept and supervised counts are summed:
            ``"world"`` (default: the default process group, when one is initialised with more than
            one rank, matching ``average_tokens_across_devices``), ``"local"`` or a process group.
        backend: ``"torch"`` or ``"triton"`` for the two passes; default chosen by the device.
        chunk_vocab: vocabulary columns per block on the fused linear path (:meth:`linear`).

    ``loss(outputs, labels, num_items_in_batch=None)`` returns the scalar loss (module docstring).
    """

    def __init__(
        self,
        objective: str = "nll",
        objective_args: Optional[dict] = None,
        *,
        ignore_index: int = IGNORE_INDEX,
        kept_count_group: Union[str, object] = "world",
        backend: Optional[str] = None,
        chunk_vocab: Optional[int] = None,
    ):
        # The logits are left intact (no in-place backward): a model may have saved them for its own
        # backward (logit soft-capping saves tanh's output).
        self.reducer = AutoModelObjectiveLoss(
            objective, dict(objective_args or {}), ignore_index=ignore_index, reduction="sum",
            kept_count_group=kept_count_group, backend=backend, inplace_backward=False,
        )
        self.chunk_vocab = chunk_vocab
        self.metric_sums = {TRAIN: MetricSums(), EVAL: MetricSums()}
        self.last_metrics: Optional[dict] = None  # the last call's, as AutoModel's loss reports them

    @property
    def objective(self):
        return self.reducer.objective

    @property
    def ignore_index(self) -> int:
        return self.reducer.ignore_index

    def __repr__(self) -> str:
        return f"HFObjectiveLoss({self.objective})"

    def targets(self, labels: Tensor, shifted: Optional[Tensor] = None) -> Tensor:
        """The next-token targets: ``shifted`` when given, else ``labels`` shifted as transformers does."""
        if shifted is not None:
            return shifted
        if labels is None:
            raise ValueError("the objective needs labels: the batch has no 'labels'")
        return shift_labels(labels, IGNORE_INDEX)

    def finish(self, out, valid: Tensor, num_items_in_batch) -> Tensor:
        """The reduced loss of one call, with its metrics added to the running sums."""
        # AutoModel's rule (module docstring): sum / num_items_in_batch, and for threshold objectives
        # each micro-batch's kept mean weighted by its supervised share, since the step's kept count is
        # unknown when the Trainer runs this micro-batch's backward.
        loss, metrics = self.reducer.reduce(out, valid, num_items_in_batch)
        if num_items_in_batch is None:
            loss = loss / out.kept.sum().clamp(min=1).to(loss.dtype)
        self.metric_sums[TRAIN if torch.is_grad_enabled() else EVAL].add(out.kept, valid, out.prob)
        self.last_metrics = metrics
        return loss

    def __call__(self, outputs, labels: Tensor, num_items_in_batch=None, shifted: Optional[Tensor] = None) -> Tensor:
        """The loss of one micro-batch; ``shifted``: labels already shifted (a batch's ``shift_labels``)."""
        logits = logits_of(outputs)
        out, valid = self.reducer.per_token(logits, self.targets(labels, shifted))
        return self.finish(out, valid, num_items_in_batch)

    def linear(self, hidden: Tensor, weight: Tensor, labels: Tensor, num_items_in_batch=None,
               shifted: Optional[Tensor] = None) -> Tensor:
        """As calling the loss on logits ``hidden @ weight.T``, without a logits tensor (the fused
        output layer): ``hidden`` [B, S, H] the final hidden states, ``weight`` [V, H] the LM head."""
        if is_dtensor(weight) or is_dtensor(hidden):
            raise TypeError("the fused linear path takes plain tensors; a sharded (DTensor) LM head is not "
                            "supported there: use the unfused path")
        target = self.reducer.prepare_labels(self.targets(labels, shifted), hidden.device, None)
        out = vocab_parallel_linear_objective(
            hidden, weight.to(hidden.dtype), target, self.objective, chunk_vocab=self.chunk_vocab,
            ignore_index=self.ignore_index, backend=self.reducer.backend,
        )
        return self.finish(out, target != self.ignore_index, num_items_in_batch)

    def pop_metrics(self, mode: str = TRAIN) -> Optional[dict]:
        """``{"mean_prob", "kept_fraction"}`` over the calls since the last pop of ``mode`` (``"train"``
        or ``"eval"``), or None when there were none. Collective when a process group is initialised."""
        return self.metric_sums[mode].pop()

    def callback(self):
        """A ``transformers.TrainerCallback`` that adds this loss's metrics to the Trainer's logs."""
        from .callback import metrics_callback

        return metrics_callback(self)

