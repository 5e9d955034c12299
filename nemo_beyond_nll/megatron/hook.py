"""Make Megatron-Core language models compute a probability objective instead of cross entropy.

`LanguageModule.compute_language_model_loss(labels, logits)` is the one place Megatron-Core turns
logits into the per-token LM loss (the main head and MTP both call it). `install` replaces it on
each LanguageModule instance, so `forward(..., labels=labels)` returns the objective's per-token
loss `[b, s]`, and everything above it (Megatron-Bridge's step, pipeline schedules, MTP) runs as is.

`install(..., fusion="linear")` also fuses the output layer into the loss (see `fused_output`), so
that training with labels never materialises the logits.

Per-token prob and kept: Megatron-Core's `forward(..., labels=labels)` returns the loss tensor and
nothing else, and Megatron-Bridge's step and schedules rely on that, so the probabilities and the
kept mask cannot come back as extra return values without changing Megatron's contract. They are
therefore kept on the LanguageModule by the installed loss, and :func:`last_output` is the one
public, tested way to read them (the training step and the CPU engine use it). Nothing is swapped
at run time on the `output_processor` route (megatron-core 0.18+): `fused_output` passes its
processor through GPTModel.forward's own argument; only 0.16/0.17, which lack that argument, defer
the output layer. Outside Megatron, the plain module and functions of :mod:`nemo_beyond_nll.core`
return the per-token outputs as values.
"""

from __future__ import annotations

import types
from typing import Iterable, Optional, Union

import torch

from ..core.linear import vocab_parallel_linear_objective
from ..core.objectives import Objective, get_objective
from ..core.vocab_parallel import ObjectiveOutput, vocab_parallel_objective
from . import fused_output

_METHOD = "compute_language_model_loss"
FUSIONS = (None, "linear")


def _language_modules(model) -> list:
    from megatron.core.models.common.language_module.language_module import LanguageModule

    models = model if isinstance(model, (list, tuple)) else [model]
    found = [m for root in models for m in root.modules() if isinstance(m, LanguageModule)]
    if not found:
        raise ValueError(f"no Megatron-Core LanguageModule found in {type(model).__name__}")
    return found


def tensor_parallel_group(module):
    """The tensor-parallel group `module` runs in: its own pg_collection's, else Megatron's global one."""
    pg_collection = getattr(module, "pg_collection", None)
    if pg_collection is not None and getattr(pg_collection, "tp", None) is not None:
        return pg_collection.tp
    from megatron.core import parallel_state

    return parallel_state.get_tensor_model_parallel_group()


def _objective_language_model_loss(self, labels: torch.Tensor, logits) -> torch.Tensor:
    """Drop-in for LanguageModule.compute_language_model_loss: labels [b, s], logits [s, b, V/tp]
    (or, with fusion="linear", the output layer's input and weight in their place)."""
    if isinstance(logits, fused_output.OutputLayerInput):
        out = vocab_parallel_linear_objective(
            logits.hidden,
            logits.weight,
            labels.transpose(0, 1),
            self.beyond_nll_objective,
            tp_group=logits.tp_group,
            check_targets=self.beyond_nll_check_targets,
            reduce_hidden_grad=False,  # Megatron's input region reduces it (see fused_output)
        )
    else:
        out = vocab_parallel_objective(
            logits,
            labels.transpose(0, 1),
            self.beyond_nll_objective,
            tp_group=tensor_parallel_group(self),
            check_targets=self.beyond_nll_check_targets,
            check_finite=getattr(self, "beyond_nll_check_finite", False),
        )
    # Kept for the training step's metrics and kept-token reduction, in the labels' [b, s] layout.
    self.beyond_nll_last_output = ObjectiveOutput(
        out.loss.transpose(0, 1), out.prob.transpose(0, 1), out.kept.transpose(0, 1), out.power
    )
    return out.loss.transpose(0, 1).contiguous()


def install(
    model,
    objective: Union[str, Objective] = "nll",
    *,
    check_targets: bool = True,
    fusion: Optional[str] = None,
    check_finite: bool = False,
    **objective_args,
):
    """Compute `objective` in place of cross entropy in every LanguageModule inside `model`.

    `model` may be a GPTModel, any wrapper around one (DDP, Float16Module) or a list of model
    chunks (virtual pipeline stages). `fusion="linear"` also fuses the output layer into the loss
    whenever labels are given (no logits tensor; same values and gradients). Returns the resolved
    :class:`Objective`. `check_finite=True` raises a one-line ValueError naming the first row of
    NaN/inf logits (see `vocab_parallel_objective`); the fused path never holds the logits, so it
    does not take it.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if check_finite and fusion == "linear":
        raise ValueError("check_finite needs the logits: it is not available with fusion='linear'")
    resolved = get_objective(objective, **objective_args)
    modules = _language_modules(model)
    if fusion == "linear":
        for module in modules:
            fused_output.check_fusable(module)  # all checks before any change
    for module in modules:
        module.beyond_nll_objective = resolved
        module.beyond_nll_check_targets = check_targets
        module.beyond_nll_check_finite = check_finite
        module.beyond_nll_last_output = None
        setattr(module, _METHOD, types.MethodType(_objective_language_model_loss, module))
        fused_output.disable(module)
        if fusion == "linear":
            fused_output.enable(module)
    return resolved


def uninstall(model) -> None:
    """Restore Megatron's own cross entropy."""
    for module in _language_modules(model):
        module.__dict__.pop(_METHOD, None)
        fused_output.disable(module)
        for attr in ("beyond_nll_objective", "beyond_nll_check_targets", "beyond_nll_check_finite",
                     "beyond_nll_last_output"):
            module.__dict__.pop(attr, None)


def installed_objective(model) -> Optional[Objective]:
    """The objective installed on `model`'s first LanguageModule, or None."""
    return getattr(_language_modules(model)[0], "beyond_nll_objective", None)


def last_output(model) -> Optional[ObjectiveOutput]:
    """Per-token (loss, prob, kept) `[b, s]` of the most recent forward with labels, or None;
    `power` is adaptive_power's m of that forward (None for other objectives).

    Public and stable: Megatron's forward returns only the loss, so this is how callers (the
    training step's metrics and kept-token reduction, the probe) get prob and kept.
    """
    return getattr(_language_modules(model)[-1], "beyond_nll_last_output", None)


__all__: Iterable[str] = ("install", "uninstall", "installed_objective", "last_output")
