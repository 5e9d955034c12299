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

import torch.distributed as dist

from ...megatron.completions import completion_probabilities, gather_1d, probe_batches
from ...run_folder import RunFolder


def backbone_probabilities(cfg, rows, batch_size: int = 4):
    """p of every completion token of `rows` under the recipe's Hugging Face backbone, gathered over
    the data-parallel ranks (on every rank). Initialises Megatron's parallel state for the probe:
    the caller tears it down (:func:`release_probe_state`) before building another model."""
    from megatron.bridge import AutoBridge
    from megatron.core import parallel_state
    from transformers import AutoTokenizer

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
    return gather_1d(completion_probabilities(model, batches), parallel_state.get_data_parallel_group()).cpu()


def release_probe_state() -> None:
    """Forget the probe's model-parallel layout, so that training sets up its own."""
    import gc

    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    gc.collect()


def run_bridge_probe(cfg, num_examples: int = 512, batch_size: int = 4) -> int:
    """Probe a bridge recipe's backbone on its training data; call under torchrun on one node's GPUs."""
    from ...probe import write_probe_report
    from ...utils.files import read_jsonl

    rows = read_jsonl(Path(cfg.data.train))[:num_examples]
    if not rows:
        raise ValueError(f"no training rows in {cfg.data.train}")
    values = backbone_probabilities(cfg, rows, batch_size)
    if dist.get_rank() == 0:
        write_probe_report(values, Path(cfg.checkpoint.dir), f"{cfg.name}: {cfg.model.hf_path}")
    return 0


def auto_objective(cfg, folder: RunFolder, batch_size: int = 4):
    """model.loss=auto on the Bridge engine (probe.decide_auto): from the backbone's p on the first
    model.auto_batches global batches' worth of training rows (the file's first rows), the probe's
    parallel state released before training. Call on every rank before training."""
    from ...probe import decide_auto
    from ...utils.files import read_jsonl

    def measure():
        rows = read_jsonl(Path(cfg.data.train))[: cfg.model.auto_batches * cfg.trainer.global_batch_size]
        if not rows:
            raise ValueError(f"no training rows in {cfg.data.train}")
        values = backbone_probabilities(cfg, rows, batch_size)
        release_probe_state()
        return values

    started = folder.checkpoints.is_dir() and any(folder.checkpoints.glob("iter_*"))
    choice, new = decide_auto(folder.root, cfg.model.auto_batches, measure, started=started, writer=dist.get_rank() == 0)
    if new:
        dist.barrier()  # auto.json is on disk before any rank goes on
    return choice.objective
