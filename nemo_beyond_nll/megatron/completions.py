"""The target probability p of completion tokens under a Megatron-Core model, for both engines.

The CPU engine's evaluation histograms, its base-model probe and the Bridge engine's probe all
measure p with :func:`completion_probabilities`; :func:`probe_batches` turns prompt/completion rows
into its batches and :func:`gather_1d` collects data-parallel ranks' values.
"""

from __future__ import annotations

from typing import Callable, Dict, List

import torch
import torch.distributed as dist

from ..data.packing import pack_example
from .hook import install, installed_objective, last_output


def gather_1d(values: torch.Tensor, group=None) -> torch.Tensor:
    """All ranks' 1-D tensors of any lengths, concatenated in rank order, on every rank."""
    world = dist.get_world_size(group)
    size = torch.tensor([values.numel()], device=values.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size, group=group)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=values.dtype, device=values.device)
    padded[: values.numel()] = values
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])


def probe_batches(rows: List[dict], encode: Callable[[str], List[int]], *, seq_length: int, pad_id: int,
                  eos_id: int, batch_size: int) -> List[Dict[str, torch.Tensor]]:
    """Prompt/completion rows as [b, s] batches; completions past seq_length are cut, not dropped."""
    examples = [pack_example(encode(r["prompt"]), encode(r["completion"]) + [eos_id], seq_length, pad_id,
                             truncate=True) for r in rows]
    batches = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        batches.append({k: torch.stack([e[k] for e in chunk]) for k in chunk[0]})
    return batches


@torch.no_grad()
def completion_probabilities(model, batches, attention_mask=None) -> torch.Tensor:
    """p of every completion token of `batches` (1-D, in order), in eval mode; the model's training
    mode is restored. p does not depend on the objective, so an installed one is kept (else nll is
    installed). Both engines and the probes measure p with this one function."""
    if installed_objective(model) is None:
        install(model, "nll")
    was_training = model.training
    model.eval()
    values = []
    try:
        for batch in batches:
            tokens = batch["tokens"].to(next(model.parameters()).device)
            position_ids = torch.arange(tokens.shape[1], device=tokens.device)[None].expand_as(tokens)
            model(tokens, position_ids, attention_mask, labels=batch["labels"].to(tokens.device))
            values.append(last_output(model).prob[batch["loss_mask"].to(tokens.device).bool()].float())
    finally:
        model.train(was_training)
    return torch.cat(values)
