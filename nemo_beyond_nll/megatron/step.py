"""The training step's loss function: reduce the installed objective over kept tokens, with metrics.

It follows Megatron-Bridge's loss-function contract, `(loss_sum, num_tokens, {name: [sum, count]})`:
the schedule adds the sums and token counts of all micro-batches and data-parallel ranks, then
divides (`calculate_per_token_loss`), so the loss is the paper's mean over kept tokens of the whole
global batch, and each metric is logged as sum / count. The CPU trainer uses the same function.
"""

from __future__ import annotations

from functools import partial
from typing import Dict, Tuple

import torch

from ..objectives import Objective
from .hook import install, installed_objective, last_output


def objective_loss_terms(
    per_token_loss: torch.Tensor, prob: torch.Tensor, kept: torch.Tensor, loss_mask: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
    """(sum of loss over kept tokens, number of kept tokens, metrics) for one micro-batch.

    A token counts when the data's loss_mask selects it and the objective keeps it. Metrics:
    `lm loss` (the reduced objective), `target prob` (mean p over loss_mask tokens) and
    `kept fraction` (kept / loss_mask tokens).
    """
    mask = loss_mask.reshape(-1).float()
    counted = kept.reshape(-1).float() * mask
    loss_sum = (per_token_loss.reshape(-1).float() * counted).sum()
    num_kept = counted.sum()
    num_tokens = mask.sum()
    metrics = {
        "lm loss": torch.stack([loss_sum.detach(), num_kept]),
        "target prob": torch.stack([(prob.reshape(-1).float() * mask).sum(), num_tokens]),
        "kept fraction": torch.stack([num_kept, num_tokens]),
    }
    return loss_sum, num_kept.to(torch.int), metrics


def objective_loss_function(model, loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """Bridge-style loss function for the per-token loss `output_tensor` the installed model returned."""
    out = last_output(model)
    if out is None:
        raise RuntimeError("no objective output on the model: call nemo_beyond_nll.megatron.install(model, ...)")
    return objective_loss_terms(output_tensor, out.prob, out.kept, loss_mask)


class ObjectiveForwardStep:
    """Megatron-Bridge forward step: Bridge's own batch handling and forward, our objective and reduction.

    Pass an instance to `megatron.bridge.training.finetune.finetune(config, ObjectiveForwardStep(obj))`.
    The objective is installed on each model chunk the first time the step sees it. Every
    `hist_interval` steps the histogram of target probabilities of the logging rank's first
    micro-batch goes to Bridge's TensorBoard and W&B loggers, so a run shows the model moving along
    the capability continuum.
    """

    def __init__(self, objective: Objective, hist_interval: int = 0, fusion=None):
        self.objective = objective
        self.hist_interval = hist_interval
        self.fusion = fusion
        self._logged_step = None

    def __call__(self, state, data_iterator, model, return_schedule_plan: bool = False):
        from megatron.bridge.training import gpt_step

        if installed_objective(model) != self.objective:
            install(model, self.objective, fusion=self.fusion)
        output, loss_mask = gpt_step._forward_step_common(state, data_iterator, model, return_schedule_plan)
        return output, partial(self.loss, state, model, loss_mask)

    def loss(self, state, model, loss_mask: torch.Tensor, output_tensor: torch.Tensor):
        terms = objective_loss_function(model, loss_mask, output_tensor)
        step = state.train_state.step
        if self.hist_interval and step % self.hist_interval == 0 and step != self._logged_step:
            self._logged_step = step
            out = last_output(model)
            values = out.prob.reshape(-1)[loss_mask.reshape(-1).bool()].float().cpu()
            self.log_histogram(state, values, step)
        return terms

    @staticmethod
    def log_histogram(state, values: torch.Tensor, step: int) -> None:
        if values.numel() == 0:
            return
        writer = getattr(state, "tensorboard_logger", None)
        if writer is not None:
            writer.add_histogram("target prob", values, step, bins=torch.linspace(0, 1, 21).numpy())
        wandb = getattr(state, "wandb_logger", None)
        if wandb is not None:
            wandb.log({"target prob": wandb.Histogram(values.numpy(), num_bins=20)}, step=step)
