from pathlib import Path

import pytest

from nemo_beyond_nll import get_objective
from nemo_beyond_nll.config import ConfigError, objective_from_config
from nemo_beyond_nll.recipe import load_recipe

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))
GPU_RECIPES = [r for r in RECIPES if "\nengine: bridge\n" in r.read_text()]


def test_there_are_recipes_for_every_backbone():
    names = {r.stem for r in GPU_RECIPES}
    for backbone in ("qwen2.5-math-1.5b", "qwen2.5-math-7b", "qwen2.5-7b", "llama3.1-8b", "llama3.1-70b", "qwen2.5-72b"):
        assert any(n.startswith(backbone + "_") for n in names), backbone


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_loads_with_nll_default(path):
    cfg = load_recipe(path)
    assert objective_from_config(cfg) == get_objective("nll")
    assert cfg.checkpoint.dir.startswith("runs/")


@pytest.mark.parametrize("path", GPU_RECIPES, ids=lambda p: p.stem)
def test_gpu_recipes_follow_the_paper(path):
    cfg = load_recipe(path)
    assert cfg.engine == "bridge" and cfg.bridge.recipe.startswith("megatron.bridge.recipes.")
    assert cfg.trainer.global_batch_size == 256 and cfg.trainer.epochs == 1
    assert cfg.optim.lr == (2e-5 if "llama" in path.stem else 5e-5)
    assert list(cfg.optim.betas) == [0.9, 0.95] and cfg.optim.weight_decay == 0.01
    assert cfg.optim.warmup_ratio == 0.1 and cfg.optim.schedule == "cosine" and cfg.optim.grad_clip == 1.0
    assert cfg.optim.bf16
    if cfg.data.domain == "math":
        assert cfg.model.seq_length == 3072
    text = path.read_text()
    assert "paper" in text.splitlines()[1], "the second comment line names the paper's finding"
    world = cfg.model.tensor_parallel * cfg.model.pipeline_parallel
    assert world <= cfg.launch.nnodes * cfg.launch.nproc_per_node


def test_large_backbones_span_nodes():
    for name in ("llama3.1-70b_math", "qwen2.5-72b_math"):
        cfg = load_recipe(Path(__file__).parents[1] / "recipes" / f"{name}.yaml")
        assert cfg.model.tensor_parallel == 8 and cfg.model.pipeline_parallel > 1 and cfg.launch.nnodes > 1


def test_name_interpolates_the_objective():
    cfg = load_recipe(Path(__file__).parents[1] / "recipes" / "tiny_cpu.yaml", ["model.loss=neg_p"])
    assert cfg.checkpoint.dir.endswith("_neg_p")


@pytest.mark.parametrize(
    "text, message",
    [
        ("engine: tpu\n", "engine must be one of"),
        ("data:\n  domain: chemistry\n", "data.domain must be one of"),
        ("trainer:\n  max_stepz: 3\n", "max_stepz"),
        ("trainer:\n  global_batch_size: 10\n  micro_batch_size: 3\n", "not a multiple"),
        ("optim:\n  warmup_ratio: 1.5\n", "warmup_ratio"),
        ("optim:\n  betas: [0.9]\n", "betas"),
        ("model:\n  tensor_parallel: 0\n", "tensor_parallel"),
        ("engine: bridge\n", "model.hf_path is required"),
        ("engine: cpu\nmodel:\n  pipeline_parallel: 2\n", "pipeline_parallel must be 1"),
        ("trainer:\n  max_steps: notanumber\n", "max_steps"),
        ("model:\n  loss_fusion: cut\n", "model.loss_fusion must be null or linear"),
    ],
)
def test_invalid_recipes_name_the_problem(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text("engine: cpu\n" + text if not text.startswith("engine") else text)
    with pytest.raises(ConfigError, match=message) as err:
        load_recipe(path)
    assert "\n" not in str(err.value)
