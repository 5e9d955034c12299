"""Every shipped AutoModel recipe (recipes/automodel/*.yaml), and the one-line switch of the README and
docs/automodel.md, through NeMo AutoModel's own config loader and the typed config its fine-tuning recipe
builds from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from nemo_automodel.components.config.loader import load_yaml_config
from nemo_automodel.recipes._typed_config import RecipeConfig

from nemo_beyond_nll.automodel import AutoModelObjectiveLoss
from nemo_beyond_nll.core.objectives import get_objective

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes" / "automodel").glob("*.yaml"))
README_MARK = "<!-- tests/automodel/test_recipes.py reads this block -->"


def build_loss(path: Path):
    """As train_ft's setup(): the YAML through AutoModel's loader, RecipeConfig, loss_fn.build()."""
    cfg = RecipeConfig(load_yaml_config(str(path)))
    return cfg, cfg.loss_fn.build()


def test_both_backbones_are_shipped():
    assert [p.name for p in RECIPES] == ["qwen2.5-math-1.5b_math.yaml", "qwen2.5-math-7b_math.yaml"]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_builds_our_loss_with_the_papers_settings(path):
    cfg, loss_fn = build_loss(path)
    assert type(loss_fn) is AutoModelObjectiveLoss
    assert loss_fn.objective == get_objective("neg_p")  # the paper's best for math on Qwen2.5-Math
    assert loss_fn.reduction == "sum" and loss_fn.ignore_index == -100

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    backbone = {"qwen2.5-math-1.5b_math.yaml": "Qwen/Qwen2.5-Math-1.5B",
                "qwen2.5-math-7b_math.yaml": "Qwen/Qwen2.5-Math-7B"}[path.name]
    assert raw["model"]["pretrained_model_name_or_path"] == backbone
    assert raw["model"]["torch_dtype"] == "bf16"
    assert raw["dataset"]["seq_length"] == raw["validation_dataset"]["seq_length"] == 3072

    steps = cfg.step_scheduler
    assert steps.global_batch_size == 256 and steps.num_epochs == 1
    optimizer = raw["optimizer"]
    assert optimizer["_target_"] == "torch.optim.AdamW" and optimizer["lr"] == 5e-5
    assert optimizer["betas"] == [0.9, 0.95] and optimizer["weight_decay"] == 0.01
    assert raw["clip_grad_norm"]["max_norm"] == 1.0
    schedule = cfg.lr_scheduler
    assert schedule.lr_decay_style == "cosine" and schedule.min_lr == 0.0
    assert schedule.lr_warmup_steps is None  # AutoModel's default: total_steps // 10

    # the optimizer and the LR schedule as AutoModel builds them, over a stand-in parameter
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], **{k: v for k, v in optimizer.items()
                                                                    if k != "_target_"})

    class Steps:
        epoch_len, num_epochs, max_steps = 100, 1, None

    (sched,) = schedule.build(opt, Steps())
    assert sched.lr_warmup_steps == 10 and sched.lr_decay_steps == 100 and sched.max_lr == 5e-5


def readme_switch() -> str:
    """The marked loss_fn block: one in the README and one in docs/automodel.md, the same line."""
    blocks = {}
    for name in ("README.md", "docs/automodel.md"):
        text = (REPO / name).read_text(encoding="utf-8")
        found = re.findall(re.escape(README_MARK) + r"\n```yaml\n(.*?)```", text, re.S)
        assert len(found) == 1, f"{name}'s AutoModel switch block is missing"
        blocks[name] = found[0]
    assert blocks["README.md"] == blocks["docs/automodel.md"], "the README's and the guide's switch differ"
    return blocks["README.md"]


def test_readme_switch_builds_the_threshold_loss(tmp_path):
    """The README's (and the guide's) loss_fn line, verbatim, in place of a shipped recipe's loss_fn."""
    switch = yaml.safe_load(readme_switch())
    raw = yaml.safe_load(RECIPES[0].read_text(encoding="utf-8"))
    raw.update(switch)
    path = tmp_path / "switched.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    _, loss_fn = build_loss(path)
    assert loss_fn.objective == get_objective("neg_p_threshold", threshold=0.1)
    logits = torch.randn(2, 4, 8, requires_grad=True)
    loss = loss_fn(logits, torch.randint(0, 8, (2, 4)), num_label_tokens=8)
    loss.backward()
    assert torch.isfinite(loss) and 0.0 <= float(loss_fn.last_metrics["kept_fraction"]) <= 1.0


def test_command_line_override_of_the_objective():
    """The recipes' header command: `--loss_fn.objective nll` through AutoModel's own argument parser."""
    from nemo_automodel.components.config._arg_parser import parse_args_and_load_config

    for path in RECIPES:
        cfg = parse_args_and_load_config(None, argv=["--config", str(path), "--loss_fn.objective", "nll",
                                                     "--loss_fn.kept_count_group", "local"])
        loss_fn = RecipeConfig(cfg).loss_fn.build()
        assert loss_fn.objective == get_objective("nll") and loss_fn.kept_count_group == "local"
