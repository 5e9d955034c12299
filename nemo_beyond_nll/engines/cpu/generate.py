"""Greedy decoding with a vocab-parallel Megatron-Core GPT (no KV cache: for small models and tests)."""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.distributed as dist

from .runtime import causal_mask
from ...megatron.hook import tensor_parallel_group


def vocab_parallel_argmax(logits: torch.Tensor, tp_group) -> torch.Tensor:
    """Global argmax over a vocabulary split across `tp_group`; ties go to the lowest id, on every rank."""
    local_max, local_arg = logits.float().max(dim=-1)
    world = dist.get_world_size(tp_group) if tp_group is not None else 1
    if world == 1:
        return local_arg
    offset = dist.get_rank(tp_group) * logits.shape[-1]
    both = torch.stack([local_max, (local_arg + offset).float()])
    parts = [torch.empty_like(both) for _ in range(world)]
    dist.all_gather(parts, both, group=tp_group)
    stacked = torch.stack(parts)  # [world, 2, ...]
    best_rank = stacked[:, 0].argmax(dim=0)  # first rank holding the max: the lowest id
    return stacked[:, 1].gather(0, best_rank[None]).squeeze(0).long()


@torch.no_grad()
def greedy_generate(
    model, prompts: Sequence[List[int]], *, max_new_tokens: int, seq_length: int, eos_id: int, pad_id: int
) -> List[List[int]]:
    """Continue each prompt (token ids) greedily until eos or `max_new_tokens`; returns the new ids."""
    model.eval()
    tp_group = tensor_parallel_group(model)
    batch = len(prompts)
    tokens = torch.full((batch, seq_length), pad_id, dtype=torch.long)
    lengths = torch.tensor([len(p) for p in prompts])
    if int(lengths.max()) + max_new_tokens > seq_length:
        raise ValueError(f"prompt plus {max_new_tokens} new tokens exceeds seq_length={seq_length}")
    for i, p in enumerate(prompts):
        tokens[i, : len(p)] = torch.tensor(p)
    position_ids = torch.arange(seq_length)[None].expand(batch, -1)
    mask = causal_mask(seq_length)
    done = torch.zeros(batch, dtype=torch.bool)
    out: List[List[int]] = [[] for _ in range(batch)]
    rows = torch.arange(batch)
    for _ in range(max_new_tokens):
        logits = model(tokens, position_ids, mask)  # [b, s, V/tp]
        next_ids = vocab_parallel_argmax(logits[rows, lengths - 1], tp_group)
        for i in torch.nonzero(~done).flatten().tolist():
            token = int(next_ids[i])
            out[i].append(token)
            done[i] = token == eos_id
        tokens[rows[~done], lengths[~done]] = next_ids[~done]
        lengths = torch.where(done, lengths, lengths + 1)
        if bool(done.all()):
            break
    model.train()
    return out
