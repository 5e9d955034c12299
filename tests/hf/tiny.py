"""A tiny random-weight Llama-shaped model and tokenizer written locally (no hub access), a pre-tokenized
data set with prompt and padding labels at -100, and a runner that trains a few steps and records
every optimizer step's gradients. Imported only after the tier's modules have skipped without trl."""

from __future__ import annotations

from pathlib import Path

import torch
from datasets import Dataset
from tiny_llama import SPECIALS, write_tiny_llama  # tests/support, on the path through tests/conftest.py
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast, Trainer, TrainerCallback, TrainingArguments

WORDS = [str(i) for i in range(20)] + ["sum", "of", "and", "="]
SEQ = 12  # every row is padded to this many tokens


def write_model(folder: Path, seed: int = 0) -> Path:
    """A LlamaForCausalLM (2 layers, hidden 32, vocabulary 32) with a word-level tokenizer, saved in `folder`."""
    return write_tiny_llama(folder, WORDS, vocab_size=len(SPECIALS) + len(WORDS) + 4, seed=seed)


def load_model(folder: Path):
    return LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)


def load_tokenizer(folder: Path):
    return PreTrainedTokenizerFast.from_pretrained(folder)


def tokenized_rows(tokenizer, rows: int = 16) -> Dataset:
    """"<s> sum of a and b =" -> "a+b </s>", right-padded to SEQ; labels -100 on the prompt and padding.
    Prompt lengths differ (one or two summands), so rows hold different numbers of supervised tokens."""
    data = {"input_ids": [], "attention_mask": [], "labels": []}
    for i in range(rows):
        a, b = i % 7, (i * 3) % 5
        prompt = f"<s> sum of {a} and {b} =" if i % 3 else f"<s> sum of {a} ="
        answer = f"{a + b} </s>" if i % 3 else f"{a} </s>"
        p, c = tokenizer(prompt)["input_ids"], tokenizer(answer)["input_ids"]
        ids = p + c
        pad = SEQ - len(ids)
        data["input_ids"].append(ids + [tokenizer.pad_token_id] * pad)
        data["attention_mask"].append([1] * len(ids) + [0] * pad)
        data["labels"].append([-100] * len(p) + c + [-100] * pad)
    return Dataset.from_dict(data)


class GradientRecorder(TrainerCallback):
    """Copies every parameter's gradient just before each optimizer step."""

    def __init__(self):
        self.steps = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.steps.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})


def training_args(out: Path, accumulation: int = 1, steps: int = 3, batch: int = 2, lr: float = 0.5,
                  args_class=TrainingArguments, **extra):
    """Deterministic CPU settings: plain SGD (no Adam normalisation to magnify rounding), no clipping,
    a log line every step, nothing saved or reported."""
    return args_class(
        output_dir=str(out), use_cpu=True, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        max_steps=steps, learning_rate=lr, optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, seed=7, data_seed=7,
        dataloader_num_workers=0, **extra,
    )


def train(trainer_class=Trainer, *, model, args, data, **kwargs):
    """Train; return (trainer, recorded gradients per optimizer step, logged losses per step)."""
    recorder = GradientRecorder()
    callbacks = kwargs.pop("callbacks", []) + [recorder]
    trainer = trainer_class(model=model, args=args, train_dataset=data, callbacks=callbacks, **kwargs)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return trainer, recorder.steps, losses


def assert_same_gradients(ours, theirs, rtol=1e-4, atol=1e-6):
    """Equal to fp32 rounding: the runs sum the same terms in another order, and later steps start from
    weights that already differ by that rounding."""
    assert len(ours) == len(theirs) and ours, (len(ours), len(theirs))
    for step, (a, b) in enumerate(zip(ours, theirs)):
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=atol, msg=lambda m: f"step {step} {name}: {m}")
