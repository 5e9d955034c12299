"""Tiny Hugging Face backbones, data and recipes for the real-Bridge tier, and a runner for its jobs.

The backbones are random-weight Qwen2- and Llama-shaped models with a character tokenizer, written
as ordinary Hugging Face folders (config, safetensors, tokenizer), so Bridge's own importer and
exporter handle them exactly as they handle a hub checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Optional

import yaml

HERE = Path(__file__).parent
REPO = HERE.parents[1]
SUPPORT = HERE / "support"

# What a CPU run of Bridge needs in place of the GPU recipes' settings: gloo, Megatron's local
# (non-TE) layers, the plain optimizer (the distributed one asserts CUDA tensor types), weights
# initialised on the CPU. fp32 comes from the recipe's own optim.bf16=false.
CPU_OVERRIDES = [
    "dist.distributed_backend=gloo",
    "model.transformer_impl=local",
    "model.use_cpu_initialization=true",
    "optimizer.use_distributed_optimizer=false",
    "ddp.use_distributed_optimizer=false",
]

BASE_RECIPES = {
    "qwen2": "megatron.bridge.recipes.qwen.qwen2.qwen25_500m_sft_config",
    "llama": "megatron.bridge.recipes.llama.llama3.llama32_1b_sft_config",
}


def write_hf_backbone(out: Path, arch: str, seed: int = 0) -> Path:
    """A random-weight `arch` (qwen2 | llama) model with a character tokenizer, saved in HF format."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config,
                              Qwen2ForCausalLM)

    out.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>",
                            bos_token="<bos>").save_pretrained(out)
    shape = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                 tie_word_embeddings=False, torch_dtype="float32", pad_token_id=0, eos_token_id=1,
                 bos_token_id=2, rope_theta=10000.0)
    torch.manual_seed(seed)
    config_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}[arch]
    model_cls(config_cls(**shape)).save_pretrained(out)
    return out


def write_sort_data(folder: Path, n_train: int = 64, n_validation: int = 16, seed: int = 0) -> Path:
    """Prompt/completion JSONL of a small sorting task, the format the recipes read."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for _ in range(n_train + n_validation):
        word = "".join(rng.choice("abcdefgh") for _ in range(5))
        rows.append({"prompt": f"sort {word}: ", "completion": "".join(sorted(word))})
    for name, part in (("train.jsonl", rows[:n_train]), ("validation.jsonl", rows[n_train:])):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    return folder


def write_recipe(path: Path, *, arch: str, hf_path: Path, data: Path, run_dir: Path, pretrained: Path,
                 loss: str = "nll", tensor_parallel: int = 1, max_steps: int = 4, extra_overrides=()) -> Path:
    """A bridge-engine recipe for a tiny backbone, run on the CPU."""
    recipe = {
        "name": f"tiny_{arch}_{loss}",
        "engine": "bridge",
        "model": {"loss": loss, "hf_path": str(hf_path), "pretrained_checkpoint": str(pretrained),
                  "tensor_parallel": tensor_parallel, "seq_length": 64},
        "data": {"train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl")},
        "trainer": {"max_steps": max_steps, "global_batch_size": 8, "micro_batch_size": 2,
                    "save_interval": 2, "log_interval": 1, "seed": 1234},
        "optim": {"lr": 1.0e-3, "warmup_ratio": 0.0, "bf16": False},
        "checkpoint": {"dir": str(run_dir)},
        "launch": {"nnodes": 1, "nproc_per_node": tensor_parallel},
        "bridge": {"recipe": BASE_RECIPES[arch], "overrides": CPU_OVERRIDES + list(extra_overrides)},
    }
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def run_job(job: str, recipe: Path, *overrides: str, nproc: Optional[int] = 1, timeout: int = 900) -> str:
    """Run one bridge_worker job under torchrun (`nproc` ranks; None: a plain process); its output,
    or an AssertionError with its tail."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(SUPPORT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("MASTER_PORT", None)
    launcher = [] if nproc is None else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [sys.executable, *launcher, str(SUPPORT / "bridge_worker.py"), job, str(recipe), *overrides]
    done = subprocess.run(cmd, env=env, cwd=recipe.parent, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(f"bridge_worker {job} failed ({done.returncode}):\n{output[-6000:]}")
    return output


def scalars(run_dir: Path, tag: str) -> dict:
    """{step: value} of a TensorBoard scalar that Bridge logged in the run (the last event per step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return {}
    return {e.step: e.value for e in events.Scalars(tag)}
