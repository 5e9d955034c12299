"""docs/hf.md's usage blocks run verbatim: each Python block marked as run here trains the tiny model."""

import re
from pathlib import Path

import pytest

from .tier import WHY

pytest.importorskip("trl", reason=WHY)

from trl import SFTConfig  # noqa: E402

from .tiny import load_model, load_tokenizer, tokenized_rows, training_args, write_model  # noqa: E402

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "hf.md"
MARK = "<!-- tests/hf/test_docs.py runs this block verbatim -->"


def marked_blocks():
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(re.escape(MARK) + r"\n```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == text.count(MARK) == 2, "every marked block is a python block right after its mark"
    return blocks


def test_the_trainer_snippet_runs(tmp_path):
    folder = write_model(tmp_path / "model")
    scope = {"model": load_model(folder), "args": training_args(tmp_path / "out", steps=2),
             "train_dataset": tokenized_rows(load_tokenizer(folder))}
    exec(compile(marked_blocks()[0], str(GUIDE), "exec"), scope)
    logged = [e for e in scope["trainer"].state.log_history if "loss" in e]
    assert scope["trainer"].state.global_step == 2 and len(logged) == 2
    assert all(0 < e["kept_fraction"] <= 1 and 0 < e["mean_prob"] < 1 for e in logged)


def test_the_trl_snippet_runs(tmp_path):
    folder = write_model(tmp_path / "model")
    sft_args = training_args(tmp_path / "out", steps=2, args_class=SFTConfig, bf16=False, max_length=None,
                             dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False)
    scope = {"model": load_model(folder), "sft_args": sft_args, "train_dataset": tokenized_rows(load_tokenizer(folder))}
    exec(compile(marked_blocks()[1], str(GUIDE), "exec"), scope)
    logged = [e for e in scope["trainer"].state.log_history if "loss" in e]
    assert scope["trainer"].state.global_step == 2
    assert all(e["kept_fraction"] == 1 and 0 < e["mean_prob"] < 1 for e in logged)  # neg_p keeps every token
