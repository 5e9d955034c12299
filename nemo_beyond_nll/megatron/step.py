"""The training step's loss function: reduce the installed objective over kept tokens, with metrics.

It follows Megatron-Bridge's loss-function contract, `(loss_sum, num_tokens, {name: [sum, count]})`:
the schedule adds the sums and token counts of all micro-batches and data-parallel ranks, then
divides (`calculate_per_token_loss`), so the loss is the mean over kept tokens of the whole global
batch (`model.loss_reduction: global`), and each metric is logged as sum / count. With
`model.loss_reduction: micro_batch` the Bridge engine turns calculate_per_token_loss off: Megatron's
schedule then divides each micro-batch's sum by its own count (at least 1) and by the number of
micro-batches, and DDP averages over data-parallel ranks, the reduction of the paper's own trainer.
The logged loss is then each micro-batch's mean with a count of 1, so that Bridge's pooling of the
pairs logs the mean of micro-batch means, the loss trained (pooled sum / count would not be).
The CPU trainer uses the same reduction (`objective_loss_terms`); the Bridge step goes through
Bridge's own loss function, so its NaN, Inf and spiky-loss checks (the rerun state machine) apply
to our objectives as to its cross entropy.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Dict, Optional, Tuple

import torch

from ..core.objectives import Objective
from ..probe import HIST_BINS, histogram_edges
from .hook import install, installed_objective, last_output

# Added to every logged count: a step that keeps no token then logs 0 instead of 0/0 = NaN, and a
# count >= 1 is unchanged (1e-30 is far below float32's resolution there).
NO_ZERO_DIVISION = 1e-30


def loss_metric_name(objective: Objective) -> str:
    """The logged name of the reduced objective: Bridge's `lm loss` for nll, else `<name> loss`."""
    return "lm loss" if objective.name == "nll" else f"{objective.name} loss"


IGNORE_INDEX = -100  # the hook's ignore_index (vocab_parallel_objective's default)


def zero_kept_warning(objective: Objective, where: str, mean_p: float, detail: str = "") -> str:
    """The warning both engines give when a threshold objective keeps no token `where` ("at steps
    1-5", "of a micro-batch at step 7"); `detail` follows the kept fraction (", threshold 0.1")."""
    return (f"WARNING: {objective} keeps no token {where} (kept fraction 0{detail}, mean p {mean_p:.4g}): "
            "it trains nothing there; lower model.loss_args.threshold if this persists")


def supervised_labels(labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """`labels` with the positions the data's loss_mask leaves out (prompt, padding) set to the
    ignore index. Their loss is masked out either way; ignoring them also keeps them out of what the
    objective computes over the call's tokens (adaptive_power's m, the mean p of supervised tokens)."""
    return torch.where(loss_mask.bool(), labels, torch.full_like(labels, IGNORE_INDEX))


def objective_loss_terms(
    per_token_loss: torch.Tensor, prob: torch.Tensor, kept: torch.Tensor, loss_mask: torch.Tensor,
    power: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
    """(sum of loss over kept tokens, number of kept tokens, metrics) for one micro-batch.

    A token counts when the data's loss_mask selects it and the objective keeps it. Metrics:
    `lm loss` (the reduced objective), `target prob` (mean p over loss_mask tokens),
    `kept fraction` (kept / loss_mask tokens) and, given adaptive_power's m as `power`, `power`.
    """
    mask = loss_mask.reshape(-1).float()
    counted = kept.reshape(-1).float() * mask
    loss_sum = (per_token_loss.reshape(-1).float() * counted).sum()
    num_kept = counted.sum()
    metrics = {"lm loss": torch.stack([loss_sum.detach(), num_kept])}
    metrics.update(probability_metrics(prob, counted, mask))
    metrics.update(power_metric(power))
    return loss_sum, num_kept.to(torch.int), metrics


def probability_metrics(prob: torch.Tensor, counted: torch.Tensor, mask: torch.Tensor) -> Dict[str, torch.Tensor]:
    """`target prob` (mean p over loss_mask tokens) and `kept fraction`, as [sum, count] pairs."""
    num_tokens = mask.sum() + NO_ZERO_DIVISION
    return {
        "target prob": torch.stack([(prob.reshape(-1).float() * mask).sum(), num_tokens]),
        "kept fraction": torch.stack([counted.sum(), num_tokens]),
    }


def power_metric(power: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
    """adaptive_power's m of one micro-batch as a `power` [m, 1] pair, so that it is logged as its mean
    over the step's micro-batches and data-parallel ranks; nothing for other objectives. Only a
    metric: the loss and its reduction do not read it."""
    if power is None:
        return {}
    return {"power": torch.stack([power.detach().float(), torch.ones((), device=power.device)])}


def installed_output(model):
    """The per-token (loss, prob, kept) of the model's last forward with labels; an error without the hook."""
    out = last_output(model)
    if out is None:
        raise RuntimeError("no objective output on the model: call nemo_beyond_nll.megatron.install(model, ...)")
    return out


def _bridge_masked_loss():
    try:  # Megatron-Bridge 0.5 and later
        from megatron.bridge.training.losses import masked_next_token_loss
    except ImportError:  # older releases defined it beside the step
        from megatron.bridge.training.gpt_step import masked_next_token_loss
    return masked_next_token_loss


class ObjectiveForwardStep:
    """Megatron-Bridge forward step: Bridge's own batch handling, forward and loss checks; our objective.

    Pass an instance to `megatron.bridge.training.finetune.finetune(config, ObjectiveForwardStep(obj))`.
    The objective is installed on each model chunk the first time the step sees it. The loss goes
    through Bridge's `masked_next_token_loss` with the kept tokens as its mask, so the run's
    `rerun_state_machine` settings (NaN/Inf and spiky-loss checks) hold as for Bridge's own loss.
    Training logs `<objective> loss` (`lm loss` for nll), `target prob`, `kept fraction` (and `power`,
    adaptive_power's m); validation logs the loss alone, since Bridge prints a perplexity beside every validation value.
    Every `hist_interval` steps the histogram of target probabilities of the logging rank's first
    micro-batch goes to Bridge's TensorBoard and W&B loggers.
    """

    def __init__(self, objective: Objective, hist_interval: int = 0, fusion=None, check_finite: bool = False):
        self.objective = objective
        self.check_finite = check_finite
        self.hist_interval = hist_interval
        self.fusion = fusion
        self.metric_name = loss_metric_name(objective)
        self._logged_step = None
        self._warned_step = None

    def __call__(self, state, data_iterator, model, return_schedule_plan: bool = False):
        from megatron.bridge.training import gpt_step

        if installed_objective(model) != self.objective:
            install(model, self.objective, fusion=self.fusion, check_finite=self.check_finite)
        output, loss_mask = gpt_step._forward_step_common(state, data_iterator, model, return_schedule_plan)
        return output, partial(self.loss, state, model, loss_mask)

    def loss(self, state, model, loss_mask: torch.Tensor, output_tensor: torch.Tensor):
        out = installed_output(model)
        mask = loss_mask.reshape(-1).float()
        counted = out.kept.reshape(-1).float() * mask
        checks = getattr(getattr(state, "cfg", None), "rerun_state_machine", None)
        loss_sum, num_kept, report = _bridge_masked_loss()(
            counted, output_tensor,
            check_for_nan_in_loss=getattr(checks, "check_for_nan_in_loss", True),
            check_for_spiky_loss=getattr(checks, "check_for_spiky_loss", False),
        )
        summed, count = next(iter(report.values())).view(-1).float().unbind()  # Bridge's one "lm loss" pair
        if getattr(getattr(getattr(state, "cfg", None), "model", None), "calculate_per_token_loss", True):
            metrics = {self.metric_name: torch.stack([summed, count + NO_ZERO_DIVISION])}
        else:  # micro_batch: this micro-batch's mean, as Megatron's schedule divides it, counted once
            metrics = {self.metric_name: torch.stack([summed / count.clamp(min=1), torch.ones_like(count)])}
        if model.training:
            metrics.update(probability_metrics(out.prob, counted, mask))
            metrics.update(power_metric(out.power))
            self._after_training_micro_batch(state, out, counted, mask, loss_mask)
        return loss_sum, num_kept, metrics

    def _after_training_micro_batch(self, state, out, counted, mask, loss_mask) -> None:
        step = state.train_state.step
        # Only a threshold drops tokens; the test costs a host sync, so other objectives skip it.
        if (self.objective.is_thresholded and step != self._warned_step
                and counted.sum() == 0 and mask.sum() > 0):
            self._warned_step = step
            mean_p = float((out.prob.reshape(-1).float() * mask).sum() / mask.sum())
            # Printed, not logged: Bridge's logging set-up filters out WARNING records by default.
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            warning = zero_kept_warning(self.objective, f"of a micro-batch at step {step}", mean_p,
                                        detail=f" of {int(mask.sum())} tokens")
            print(f"[rank {rank}] {warning}", file=sys.stderr, flush=True)
        if self.hist_interval and step % self.hist_interval == 0 and step != self._logged_step:
            self._logged_step = step
            values = out.prob.reshape(-1)[loss_mask.reshape(-1).bool()].float().cpu()
            self.log_histogram(state, values, step)

    @staticmethod
    def log_histogram(state, values: torch.Tensor, step: int) -> None:
        if values.numel() == 0:
            return
        writer = getattr(state, "tensorboard_logger", None)
        if writer is not None:
            writer.add_histogram("target prob", values, step, bins=histogram_edges().numpy())
        wandb = getattr(state, "wandb_logger", None)
        if wandb is not None:
            wandb.log({"target prob": wandb.Histogram(values.numpy(), num_bins=HIST_BINS)}, step=step)
