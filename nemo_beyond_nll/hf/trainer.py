"""A Trainer mixin: the objective on the fused output layer, and its metrics inside ``Trainer.log``.

``class MyTrainer(ObjectiveTrainerMixin, transformers.Trainer)`` (or ``trl.SFTTrainer``; the package
offers both as ``ObjectiveTrainer`` and ``ObjectiveSFTTrainer``) takes ``objective_loss=`` (an
:class:`~.loss.ObjectiveLoss` or an objective name) and ``fused_linear=`` (default True).

Fused: the model is asked for its final hidden states instead of its logits, and the loss runs the
project's fused linear path on them with the LM head's weight (no [tokens, vocabulary] logits
tensor; see :mod:`nemo_beyond_nll.core.linear`). To go through whatever wraps the model (DDP,
accelerate), the model's ``forward`` gets one keyword, ``return_final_hidden_states=True``, that
returns its backbone's output (``model.base_model``, the decoder with its final norm) and otherwise
calls the original forward, so generation and evaluation are unchanged. Models whose logits are not
``hidden @ lm_head.weight.T`` (a bias, soft-capping or a logit scale in the config) are refused.
Calls that want the model's outputs back (``return_outputs=True``: evaluation, ``compute_metrics``)
take the unfused path, because those outputs must hold logits.

The loss is what :class:`~.loss.ObjectiveLoss` returns, scaled as ``Trainer.compute_loss`` scales a
``compute_loss_func``'s loss (by the number of processes when ``average_tokens_across_devices``,
since DDP averages the gradients); the Trainer is given the loss as its ``compute_loss_func`` too, so
that it counts ``num_items_in_batch`` and treats the loss as normalised for gradient accumulation.

Nothing here imports transformers; the classes built on Trainer and SFTTrainer are made on first use.
"""

from __future__ import annotations

import functools
from typing import Optional, Union

from .callback import metrics_for_log
from .loss import HFObjectiveLoss

HIDDEN_STATES_KEYWORD = "return_final_hidden_states"
# Config fields that change the logits after hidden @ weight.T, which the fused path does not apply.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier",
                    "lm_head_multiplier")


def check_fusable(model) -> None:
    """Raise ValueError unless ``model``'s logits are its base model's last hidden state times its LM head's weight."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or getattr(head, "weight", None) is None or getattr(model, "base_model", model) is model:
        raise ValueError(f"{type(model).__name__} exposes no LM head and base model: use fused_linear=False")
    if getattr(head, "bias", None) is not None:
        raise ValueError(f"{type(model).__name__}'s LM head has a bias, which the fused path does not add: "
                         "use fused_linear=False")
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    changed = [name for name in LOGIT_TRANSFORMS if getattr(config, name, None) not in (None, 1, 1.0)]
    if changed:
        raise ValueError(f"{type(model).__name__} transforms its logits ({', '.join(changed)}), which the fused "
                         "path does not: use fused_linear=False")


def install_hidden_states_forward(model) -> None:
    """Give ``model.forward`` the keyword ``return_final_hidden_states``: True returns the base model's
    output (``last_hidden_state``) instead of calling the LM head. Idempotent."""
    if getattr(model.forward, "returns_final_hidden_states", False):
        return
    check_fusable(model)
    original = model.forward

    @functools.wraps(original)  # the Trainer reads forward's signature to choose the dataset columns
    def forward(*args, **kwargs):
        if not kwargs.pop(HIDDEN_STATES_KEYWORD, False):
            return original(*args, **kwargs)
        return model.base_model(*args, **kwargs)  # looked up per call: PEFT and FSDP replace it

    forward.returns_final_hidden_states = True
    model.forward = forward


class ObjectiveTrainerMixin:
    """Put before ``transformers.Trainer`` or ``trl.SFTTrainer`` in a class's bases (module docstring).

    Args:
        objective_loss: an :class:`~.loss.ObjectiveLoss`, or an objective name (no arguments);
            default ``nll``.
        fused_linear: compute the objective from the final hidden states and the LM head's weight,
            without logits (default True).
    """

    def __init__(self, *args, objective_loss: Union[HFObjectiveLoss, str, None] = None, fused_linear: bool = True,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(objective_loss, HFObjectiveLoss):
            objective_loss = HFObjectiveLoss(objective_loss or "nll")
        self.objective_loss = objective_loss
        self.fused_linear = fused_linear
        # Seen as a compute_loss_func, the loss makes the Trainer count num_items_in_batch over the
        # accumulated micro-batches and not divide the loss again by the accumulation steps.
        self.compute_loss_func = objective_loss
        if fused_linear:
            install_hidden_states_forward(self.model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)
        shifted = inputs.pop("shift_labels", None)
        if self.fused_linear and not return_outputs:
            outputs = model(**inputs, use_cache=False, **{HIDDEN_STATES_KEYWORD: True})
            head = self.accelerator.unwrap_model(model).get_output_embeddings()
            loss = self.objective_loss.linear(outputs.last_hidden_state, head.weight, labels, num_items_in_batch,
                                              shifted)
        else:
            outputs = model(**inputs)
            loss = self.objective_loss(outputs, labels, num_items_in_batch, shifted)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.process_scale()
        return (loss, outputs) if return_outputs else loss

    def process_scale(self) -> int:
        """What ``Trainer.compute_loss`` multiplies a token-normalised loss by: the data-parallel
        processes (DDP averages gradients over them), or the GPUs of a DataParallel model."""
        if self.args.n_gpu > 1:
            return self.args.n_gpu
        tp_size = self.get_tp_size() if hasattr(self, "get_tp_size") else 1
        return self.accelerator.num_processes // tp_size

    def log(self, logs: dict, *args, **kwargs) -> None:
        logs.update(metrics_for_log(self.objective_loss, logs))
        super().log(logs, *args, **kwargs)


_CLASSES = {}


def trainer_class(base: type, name: Optional[str] = None) -> type:
    """``ObjectiveTrainerMixin`` with ``base`` (a Trainer class) as its second base."""
    name = name or f"Objective{base.__name__}"
    return type(name, (ObjectiveTrainerMixin, base), {"__module__": "nemo_beyond_nll.hf", "__qualname__": name,
                                                      "__doc__": ObjectiveTrainerMixin.__doc__})


def objective_trainer() -> type:
    if "Trainer" not in _CLASSES:
        from transformers import Trainer

        _CLASSES["Trainer"] = trainer_class(Trainer, "ObjectiveTrainer")
    return _CLASSES["Trainer"]


def objective_sft_trainer() -> type:
    if "SFTTrainer" not in _CLASSES:
        from trl import SFTTrainer

        _CLASSES["SFTTrainer"] = trainer_class(SFTTrainer, "ObjectiveSFTTrainer")
    return _CLASSES["SFTTrainer"]
