"""Megatron-Core glue for `install(..., fusion="linear")`: the output layer and the objective fused.

When labels are given, the model's output layer (a ColumnParallelLinear) is not run: its input goes
through the same input region the layer would use, and the loss comes from
`vocab_parallel_linear_objective` over that input and the layer's weight, so no logits tensor exists.

Megatron expects the hidden states' gradient to be reduced over the tensor-parallel group inside the
output layer's autograd (all-reduce, or reduce-scatter with sequence parallelism). We keep that
exactly by applying Megatron's own region function (`copy_to_tensor_model_parallel_region` or
`gather_from_sequence_parallel_region`) to the input, and call the fused function with
`reduce_hidden_grad=False`, so the reduction happens once, where Megatron puts it.

Two ways in, picked by feature detection:
- megatron-core with the `output_processor` argument of `GPTModel.forward` (0.18+): forward is
  wrapped to pass our processor whenever labels are given;
- older megatron-core (0.16, 0.17): `_postprocess` is wrapped so that, while labels are given, the
  output layer returns an :class:`OutputLayerInput` in place of logits, which the installed
  `compute_language_model_loss` recognises. The main head and MTP heads both go through it.
Without labels (generation, evaluation of logits) the model runs untouched.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass

import torch

_FORWARD = "forward"
_POSTPROCESS = "_postprocess"


@dataclass
class OutputLayerInput:
    """What the output layer would multiply: its input after Megatron's input region, and its weight."""

    hidden: torch.Tensor  # [s, b, H]
    weight: torch.Tensor  # [V / tp, H]
    tp_group: object


def uses_output_processor(module) -> bool:
    return "output_processor" in inspect.signature(type(module).forward).parameters


def check_fusable(module) -> None:
    """Raise ValueError where the fused path would not compute what the output layer computes."""
    layer = getattr(module, "output_layer", None)
    if layer is None:
        return  # not the last pipeline stage: nothing to fuse
    config = module.config
    reasons = {
        "the output layer has a bias": getattr(layer, "bias", None) is not None,
        "the output layer gathers its output (parallel_output=False)": getattr(layer, "gather_output", False),
        "defer_embedding_wgrad_compute is set": getattr(config, "defer_embedding_wgrad_compute", False),
        "use_mup scales the logits": getattr(config, "use_mup", False),
    }
    if not uses_output_processor(module) and not hasattr(module, _POSTPROCESS):
        reasons["this megatron-core has neither output_processor nor GPTModel._postprocess"] = True
    for reason, present in reasons.items():
        if present:
            raise ValueError(f"fusion='linear' is not possible on {type(module).__name__}: {reason}")


def output_layer_input(layer, hidden, weight=None, runtime_gather_output=None) -> OutputLayerInput:
    """The output layer's input after the region its forward would apply, with the weight it would use."""
    from megatron.core.tensor_parallel.mappings import (
        copy_to_tensor_model_parallel_region,
        gather_from_sequence_parallel_region,
    )

    if runtime_gather_output:
        raise ValueError("fusion='linear' cannot gather the output layer's logits (runtime_gather_output=True)")
    weight = layer.weight if weight is None else weight
    group = layer.tp_group
    if layer.sequence_parallel:
        # Forward all-gathers the sequence; backward reduce-scatters the gradient.
        hidden = gather_from_sequence_parallel_region(hidden, tensor_parallel_output_grad=True, group=group)
    elif not (getattr(layer, "explicit_expert_comm", False) or getattr(layer, "disable_grad_reduce", False)):
        # Identity forward; backward all-reduces, as the layer's own dgrad reduction would.
        hidden = copy_to_tensor_model_parallel_region(hidden, group=group)
    return OutputLayerInput(hidden, weight, group)


def _deferring_output_layer(self, input_, weight=None, runtime_gather_output=None):
    """Stands in for ColumnParallelLinear.forward while labels are given (older megatron-core)."""
    return output_layer_input(self, input_, weight, runtime_gather_output), None


def _postprocess_with_labels_fused(self, *args, **kwargs):
    original = types.MethodType(type(self)._postprocess, self)
    labels = inspect.signature(original).bind_partial(*args, **kwargs).arguments.get("labels")
    if labels is None:
        return original(*args, **kwargs)
    self.output_layer.forward = types.MethodType(_deferring_output_layer, self.output_layer)
    try:
        return original(*args, **kwargs)
    finally:
        del self.output_layer.forward


def fused_output_processor(*, hidden_states, output_layer, output_weight, labels, compute_language_model_loss,
                           runtime_gather_output=None, **_unused):
    """An `output_processor` for GPTModel.forward (megatron-core 0.18+): labels are always given here."""
    deferred = output_layer_input(output_layer, hidden_states, output_weight, runtime_gather_output)
    return compute_language_model_loss(labels, deferred)


def _forward_with_labels_fused(self, *args, **kwargs):
    original = types.MethodType(type(self).forward, self)
    arguments = inspect.signature(original).bind_partial(*args, **kwargs).arguments
    if arguments.get("labels") is not None and arguments.get("output_processor") is None:
        kwargs["output_processor"] = fused_output_processor
    return original(*args, **kwargs)


def enable(module) -> None:
    """Fuse `module`'s output layer with the installed objective whenever labels are given."""
    check_fusable(module)
    if getattr(module, "output_layer", None) is None:
        return
    if uses_output_processor(module):
        module.forward = types.MethodType(_forward_with_labels_fused, module)
    else:
        module._postprocess = types.MethodType(_postprocess_with_labels_fused, module)


def disable(module) -> None:
    for name in (_FORWARD, _POSTPROCESS):
        module.__dict__.pop(name, None)
