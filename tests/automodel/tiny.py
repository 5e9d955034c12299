"""A tiny Llama-shaped backbone, tokenizer, data set and AutoModel YAML, written locally (no hub access),
and a runner for AutoModel's own fine-tuning recipe on them (``support/run_train_ft.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from tiny_llama import write_tiny_llama  # tests/support, on the path through tests/conftest.py

HERE = Path(__file__).parent
REPO = HERE.parents[1]
SUPPORT = HERE / "support"

WORDS = [str(i) for i in range(31)] + ["what", "is", "plus", "?"]


def write_backbone(folder: Path, seed: int = 0) -> Path:
    """A random-weight LlamaForCausalLM (2 layers, hidden 32, vocab 64) with a word-level tokenizer."""
    return write_tiny_llama(folder, WORDS, vocab_size=64, seed=seed)


def write_data(path: Path, rows: int = 64) -> Path:
    """question/answer JSONL: "what is a plus b ?" -> "a plus b is a+b"."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            a, b = i % 8, (i // 8) % 8
            f.write(json.dumps({"question": f"what is {a} plus {b} ?", "answer": f"{a} plus {b} is {a + b}"}) + "\n")
    return path


def recipe(model: Path, data: Path, out: Path, loss_fn: dict, *, max_steps: int = 4, lr: float = 1e-3) -> dict:
    """An AutoModel llm fine-tuning config for the tiny backbone on CPU/gloo, one process, fp32."""
    return {
        "seed": 1234,
        "step_scheduler": {"global_batch_size": 16, "local_batch_size": 8, "ckpt_every_steps": 1000,
                           "val_every_steps": 1000, "num_epochs": 1, "max_steps": max_steps},
        "dist_env": {"backend": "gloo", "timeout_minutes": 1},
        "rng": {"_target_": "nemo_automodel.components.training.rng.StatefulRNG", "seed": 1111, "ranked": True},
        "model": {"_target_": "nemo_automodel.NeMoAutoModelForCausalLM.from_pretrained",
                  "pretrained_model_name_or_path": str(model), "torch_dtype": "float32"},
        "checkpoint": {"enabled": False, "checkpoint_dir": str(out / "checkpoints")},
        "distributed": {"strategy": "fsdp2", "dp_size": None, "tp_size": 1, "cp_size": 1},
        "loss_fn": loss_fn,
        "dataset": {
            "_target_": "nemo_automodel.components.datasets.llm.column_mapped_text_instruction_dataset."
                        "ColumnMappedTextInstructionDataset",
            "path_or_dataset_id": str(data),
            "column_mapping": {"question": "question", "answer": "answer"},
            "answer_only_loss_mask": True,
        },
        "dataloader": {"_target_": "torchdata.stateful_dataloader.StatefulDataLoader",
                       "collate_fn": "nemo_automodel.components.datasets.utils.default_collater", "shuffle": False},
        "optimizer": {"_target_": "torch.optim.AdamW", "betas": [0.9, 0.95], "lr": lr, "weight_decay": 0.01},
        "clip_grad_norm": {"max_norm": 1.0},
    }


def run_train_ft(config: dict, out: Path, timeout: int = 600) -> list:
    """Run AutoModel's fine-tuning recipe on `config` in a fresh process; return its per-step records:
    the recipe's own step metrics, plus the loss's ``last_metrics`` where the loss has them."""
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    records = out / "steps.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(SUPPORT)]), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(out / "hf_home"), "TOKENIZERS_PARALLELISM": "false"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, str(SUPPORT / "run_train_ft.py"), str(cfg_path), str(records)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=out)
    if proc.returncode != 0:
        raise RuntimeError(f"AutoModel's train_ft exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-6000:]}")
    return [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()]
