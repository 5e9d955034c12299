"""Redirect the CUDA-only calls of NeMo AutoModel's fine-tuning recipe to the CPU (test support only).

``nemo_automodel.recipes.llm.train_ft`` (0.7.0) runs on a CPU with the gloo backend once these
calls, which have nothing to do with the numbers a step computes, stop asking for CUDA:

- ``torch.cuda.reset_peak_memory_stats`` (start of ``setup`` and of the training loop) and
  ``torch.cuda.max_memory_allocated`` (the ``mem`` metric): memory bookkeeping; here a no-op and 0;
- ``torch.cuda.current_device``: AutoModel builds ``torch.device("cuda", current_device())`` when
  it instantiates and applies its model infrastructure (FSDP2 wrapping, weight loading); here it
  returns 0, and ``instantiate_infrastructure`` / ``apply_model_infrastructure`` as
  ``NeMoAutoModelForCausalLM.from_pretrained`` calls them receive ``device=cpu`` instead.

Everything else is AutoModel's own code: its config loader, dataset, collater, data loader, step
scheduler, HF model, FSDP2 wrapping, optimizer, LR schedule, gradient clipping, loss call and
loss normalisation. ``dist_env.backend: gloo`` comes from the test's YAML, not from here.
"""

from __future__ import annotations

import functools

import torch

_APPLIED = False


def _on_cpu(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = torch.device("cpu")
        return fn(*args, **kwargs)

    return wrapper


def apply() -> None:
    global _APPLIED
    if _APPLIED:
        return
    torch.cuda.reset_peak_memory_stats = lambda *args, **kwargs: None
    torch.cuda.max_memory_allocated = lambda *args, **kwargs: 0
    torch.cuda.current_device = lambda: 0

    import nemo_automodel._transformers.auto_model as auto_model

    auto_model.instantiate_infrastructure = _on_cpu(auto_model.instantiate_infrastructure)
    auto_model.apply_model_infrastructure = _on_cpu(auto_model.apply_model_infrastructure)
    _APPLIED = True
