"""The probe on a GPU recipe: the Hugging Face backbone in Megatron-Core, forward only, every rank.

The probe needs no optimizer state, so it runs with tensor parallelism over the GPUs of a node
(up to 8) and no pipeline parallelism, whatever the recipe trains with: a 70B backbone in bf16 is
about 18 GB per GPU at TP=8. Data-parallel ranks take interleaved shares of the sample, and their
probabilities are gathered on rank 0, which writes probe.json and probe.png.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
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


def run_bridge_probe(cfg, num_examples: int = 512, batch_size: int = 4) -> int:
    """Probe a bridge recipe's backbone on its training data; call under torchrun on one node's GPUs."""
    from megatron.bridge import AutoBridge
    from megatron.core import parallel_state
    from transformers import AutoTokenizer

    from ..probe import write_probe_report
    from ..utils.files import read_jsonl

    rows = read_jsonl(Path(cfg.data.train))[:num_examples]
    if not rows:
        raise ValueError(f"no training rows in {cfg.data.train}")
    provider = AutoBridge.from_hf_pretrained(cfg.model.hf_path).to_megatron_provider(load_weights=True)
    gpus_per_node = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    provider.tensor_model_parallel_size = math.gcd(gpus_per_node, 8)
    provider.pipeline_model_parallel_size = 1
    provider.context_parallel_size = 1
    provider.sequence_parallel = False
    provider.finalize()
    provider.initialize_model_parallel(seed=0)
    model = provider.provide_distributed_model(wrap_with_ddp=False)[0]

    tokenizer = AutoTokenizer.from_pretrained(cfg.model.hf_path)
    dp_rank = parallel_state.get_data_parallel_rank()
    dp_size = parallel_state.get_data_parallel_world_size()
    batches = probe_batches(rows[dp_rank::dp_size], lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
                            seq_length=cfg.model.seq_length, pad_id=tokenizer.pad_token_id or 0,
                            eos_id=tokenizer.eos_token_id, batch_size=batch_size)
    values = gather_1d(completion_probabilities(model, batches), parallel_state.get_data_parallel_group())
    if dist.get_rank() == 0:
        write_probe_report(values.cpu(), Path(cfg.checkpoint.dir), f"{cfg.name}: {cfg.model.hf_path}")
    return 0
