"""One prompt/completion example as next-token training tensors, whatever the tokenizer."""

from __future__ import annotations

from typing import Dict, List

import torch


def pack_example(prompt_ids: List[int], completion_ids: List[int], seq_length: int, pad_id: int,
                 truncate: bool = False) -> Dict[str, torch.Tensor]:
    """tokens/labels/loss_mask of length `seq_length`; the loss is on the completion tokens only.

    `truncate=False` raises on an example that does not fit; `truncate=True` cuts the completion's end.
    """
    ids = list(prompt_ids) + list(completion_ids)
    if len(ids) > seq_length + 1:
        if not truncate or len(prompt_ids) >= seq_length:
            raise ValueError(f"example of {len(ids)} tokens does not fit seq_length={seq_length}")
        ids = ids[: seq_length + 1]
    answer_tokens = len(ids) - len(prompt_ids)
    ids = ids + [pad_id] * (seq_length + 1 - len(ids))
    loss_mask = [0.0] * (len(prompt_ids) - 1) + [1.0] * answer_tokens
    loss_mask += [0.0] * (seq_length - len(loss_mask))
    return {"tokens": torch.tensor(ids[:-1]), "labels": torch.tensor(ids[1:]), "loss_mask": torch.tensor(loss_mask)}
