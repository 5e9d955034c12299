"""Every GPU recipe (recipes/*.yaml and the paper's, recipes/paper/*_*.yaml) against the real
Megatron-Bridge: offline dry runs, the assembled ConfigContainer through Bridge's own validate(), and
each recipe key where Bridge reads it."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nemo_beyond_nll.cli import main
from nemo_beyond_nll.config import ConfigError
from nemo_beyond_nll.recipe import load_recipe

ROOT = Path(__file__).parents[2]
HF_FIXTURES = Path(__file__).parent / "fixtures" / "hf"
GPU_RECIPES = sorted(p for p in (ROOT / "recipes").glob("*.yaml") if load_recipe(p).engine == "bridge")
PAPER_RECIPES = sorted((ROOT / "recipes" / "paper").glob("*_*.yaml"))  # not published.yaml: the tables
ALL_RECIPES = GPU_RECIPES + PAPER_RECIPES
BASE_RECIPES = sorted({load_recipe(p).bridge.recipe for p in ALL_RECIPES})
CONTAINER_MARK = "# Megatron-Bridge ConfigContainer (passed ConfigContainer.validate()):\n"

pytestmark = pytest.mark.usefixtures("te_fused_rope")


def dry_run(capsys, recipe, *overrides, command="sft"):
    code = main([command, "--config", str(recipe), "--dry-run", *overrides])
    out, err = capsys.readouterr()
    return code, out, err


def printed_container(out: str) -> dict:
    assert CONTAINER_MARK in out, out[-2000:]
    return yaml.safe_load(out.split(CONTAINER_MARK, 1)[1])


def write_jsonl(path: Path, rows: int) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n" for i in range(rows)))
    return path


def recipe_id(path: Path) -> str:
    return str(path.relative_to(ROOT / "recipes").with_suffix(""))


def test_gpu_recipes_are_found():
    assert len(GPU_RECIPES) == 7 and all(r.startswith("megatron.bridge.recipes.") for r in BASE_RECIPES)
    assert len(PAPER_RECIPES) == 12 and all(load_recipe(p).engine == "bridge" for p in PAPER_RECIPES)


def test_fixtures_cover_every_backbone_a_recipe_or_base_recipe_names():
    """The recipes' own backbones, and the ids Bridge's base recipe functions ask for themselves."""
    import importlib

    from megatron.bridge import AutoBridge

    from nemo_beyond_nll.engines.bridge.finetune import backbone_for_every_request

    ids = {str(load_recipe(p).model.hf_path) for p in ALL_RECIPES}
    backbone = AutoBridge.from_hf_pretrained(str(HF_FIXTURES / "Qwen--Qwen2.5-Math-1.5B"))
    for dotted in BASE_RECIPES:
        module, _, name = dotted.rpartition(".")
        with backbone_for_every_request(AutoBridge, backbone) as asked:
            getattr(importlib.import_module(module), name)()
        ids.update(asked)
    assert {"meta-llama/Meta-Llama-3.1-8B", "meta-llama/Meta-Llama-3.1-70B", "Qwen/Qwen2.5-1.5B",
            "deepseek-ai/deepseek-math-7b-base", "meta-llama/Llama-3.2-3B"} <= ids
    assert sorted(ids) == sorted(p.name.replace("--", "/", 1) for p in HF_FIXTURES.iterdir())


@pytest.mark.parametrize("recipe", ALL_RECIPES, ids=recipe_id)
def test_dry_run_prints_the_validated_container_as_plain_yaml(capsys, recipe):
    code, out, err = dry_run(capsys, recipe)
    assert code == 0, err
    assert "!!python" not in out
    container = printed_container(out)
    cfg = load_recipe(recipe)
    assert container["model"]["tensor_model_parallel_size"] == cfg.model.tensor_parallel
    assert container["dataset"]["dataset_root"] == f"{cfg.checkpoint.dir}/dataset"
    # No data file here: the schedule's length is shown as computed at launch, not the base recipe's.
    for section, key in (("train", "train_iters"), ("scheduler", "lr_decay_iters"),
                         ("scheduler", "lr_warmup_iters"), ("scheduler", "lr_warmup_steps")):
        assert container[section][key] == "<computed at launch from the row count of data.train>"
    assert out.index("#   model.tensor_model_parallel_size=") < out.index(CONTAINER_MARK)


def test_dry_run_with_data_shows_the_schedule_from_its_rows(capsys, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", 1000)
    code, out, err = dry_run(capsys, GPU_RECIPES[0], f"data.train={train}")
    assert code == 0, err
    container = printed_container(out)
    assert container["train"]["train_iters"] == 4 and container["scheduler"]["lr_decay_iters"] == 4


@pytest.mark.parametrize("command", ["import", "eval"])
def test_import_and_eval_dry_runs(capsys, command):
    code, out, err = dry_run(capsys, ROOT / "recipes" / "qwen2.5-7b_medical.yaml", command=command)
    assert code == 0, err
    assert "hf_path: Qwen/Qwen2.5-7B" in out


def build(recipe, tmp_path, *overrides):
    from nemo_beyond_nll.engines.bridge.finetune import build_config, validate_config

    train = write_jsonl(tmp_path / "train.jsonl", 1000)
    validation = write_jsonl(tmp_path / "validation.jsonl", 10)
    cfg = load_recipe(recipe, [f"data.train={train}", f"data.validation={validation}",
                               f"checkpoint.dir={tmp_path / 'run'}", *overrides])
    container = build_config(cfg)
    return cfg, container, validate_config(container, cfg)


@pytest.mark.parametrize("recipe", ALL_RECIPES, ids=recipe_id)
def test_every_recipe_key_lands_where_bridge_reads_it(tmp_path, recipe):
    import torch

    cfg, c, v = build(recipe, tmp_path)
    m, t, o, run = cfg.model, cfg.trainer, cfg.optim, tmp_path / "run"
    assert c.model.tensor_model_parallel_size == m.tensor_parallel
    assert c.model.pipeline_model_parallel_size == m.pipeline_parallel
    assert c.model.virtual_pipeline_model_parallel_size == m.virtual_pipeline_parallel
    assert c.model.context_parallel_size == m.context_parallel
    assert c.model.sequence_parallel == m.sequence_parallel
    assert c.model.seq_length == c.dataset.seq_length == m.seq_length
    assert c.train.global_batch_size == t.global_batch_size and c.train.micro_batch_size == t.micro_batch_size
    assert c.rng.seed == c.dataset.seed == t.seed
    assert c.optimizer.lr == o.lr and c.optimizer.min_lr == o.min_lr
    assert (c.optimizer.adam_beta1, c.optimizer.adam_beta2) == tuple(o.betas)
    # Megatron's scheduler sets the weight decay each step from start/end_weight_decay.
    assert c.optimizer.weight_decay == c.scheduler.start_weight_decay == c.scheduler.end_weight_decay == o.weight_decay
    assert c.optimizer.clip_grad == o.grad_clip
    assert c.scheduler.lr_decay_style == o.schedule
    # data.drop_last: the partial last batch left out (floor), else trained on (ceil).
    iters = (math.floor if cfg.data.drop_last else math.ceil)(t.epochs * 1000 / t.global_batch_size)
    assert c.train.train_iters == c.scheduler.lr_decay_iters == iters
    assert c.scheduler.lr_warmup_iters == int(o.warmup_ratio * iters)
    assert v.scheduler.lr_decay_steps == iters * t.global_batch_size
    assert c.checkpoint.save == c.checkpoint.load == str(run / "checkpoints")
    assert c.checkpoint.pretrained_checkpoint == f"runs/base_megatron/{m.hf_path.replace('/', '--')}"
    assert c.checkpoint.save_interval == t.save_interval
    assert c.logger.log_interval == t.log_interval
    assert c.logger.tensorboard_dir == str(run / "tensorboard")
    # trainer.eval_interval: 0 in every recipe: no validation at all.
    assert t.eval_interval == 0 and c.validation.eval_interval is None and c.validation.eval_iters == 0
    # optim.bf16: true in every recipe: Bridge's bf16_mixed, applied by validation as at launch.
    assert o.bf16 and c.mixed_precision.bf16 and v.model.bf16 and v.model.params_dtype == torch.bfloat16
    assert v.optimizer.bf16
    root = Path(c.dataset.dataset_root)
    assert root == run / "dataset"
    assert (root / "training.jsonl").resolve() == Path(cfg.data.train).resolve()
    assert (root / "validation.jsonl").resolve() == Path(cfg.data.validation).resolve()
    # model.loss_reduction global: per-token loss, the kept tokens of the global batch divide it, so
    # DDP sums; micro_batch: Megatron's schedule divides each micro-batch by its own count.
    assert c.model.calculate_per_token_loss == v.model.calculate_per_token_loss == (m.loss_reduction == "global")
    assert not c.ddp.average_in_collective
    assert c.tokenizer.tokenizer_model == m.hf_path


def test_eval_interval_and_fp32_reach_bridge(tmp_path):
    import torch

    _, c, v = build(ROOT / "recipes" / "qwen2.5-math-1.5b_math.yaml", tmp_path,
                    "trainer.eval_interval=25", "optim.bf16=false")
    assert c.validation.eval_interval == 25 and c.validation.eval_iters > 0
    assert not c.mixed_precision.bf16 and not v.model.bf16 and not v.model.fp16
    assert v.model.params_dtype == torch.float32 and not v.optimizer.bf16 and not v.optimizer.fp16


def test_per_token_loss_passes_bridges_context_parallel_check(tmp_path):
    """Bridge's validate() asserts average_in_collective=False for SFT with CP>1 (Megatron's DDP
    asserts it for any per-token loss); the Qwen2.5 base recipes set it True."""
    _, c, _ = build(ROOT / "recipes" / "qwen2.5-7b_medical.yaml", tmp_path, "model.context_parallel=2")
    assert c.model.context_parallel_size == 2 and not c.ddp.average_in_collective


def test_base_recipe_runs_on_our_backbone_and_never_resolves_its_own(tmp_path, monkeypatch):
    from megatron.bridge.models.conversion import auto_bridge

    loaded = []
    load = auto_bridge.safe_load_config_with_retry
    monkeypatch.setattr(auto_bridge, "safe_load_config_with_retry",
                        lambda path, *a, **k: loaded.append(str(path)) or load(path, *a, **k))
    cfg, c, _ = build(ROOT / "recipes" / "qwen2.5-math-1.5b_math.yaml", tmp_path)
    # Qwen2.5-Math-1.5B, not the base recipe's Qwen2.5-1.5B: RoPE base 10000 (not 1e6), 4096 positions.
    assert (c.model.num_layers, c.model.hidden_size, c.model.rotary_base) == (28, 1536, 10000)
    assert c.model.share_embeddings_and_output_weights
    # The base recipe's run settings survive on our provider.
    assert c.model.transformer_impl == "transformer_engine"
    assert len(loaded) == 1 and "Qwen2.5-Math-1.5B" in loaded[0] and "models--Qwen--Qwen2.5-Math-1.5B" in loaded[0]


@pytest.mark.parametrize("name, shape", [
    # layers, hidden, heads, query groups, MLP, vocabulary, tied embeddings, RoPE base, llama3 RoPE factor
    ("deepseek-math-7b_math", (30, 4096, 32, 32, 11008, 102400, False, 10000, None)),
    ("llama3.2-3b_medical", (28, 3072, 24, 8, 8192, 128256, True, 500000, 32)),
])
def test_paper_backbones_reach_bridge_with_their_published_shapes(tmp_path, name, shape):
    """The two backbones only the paper's recipes name: their fixtures, through the base recipe."""
    _, c, _ = build(ROOT / "recipes" / "paper" / f"{name}.yaml", tmp_path)
    m = c.model
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_query_groups, m.ffn_hidden_size,
            m.vocab_size, m.share_embeddings_and_output_weights, m.rotary_base,
            m.rope_scaling_factor if m.rope_scaling else None) == shape


def test_a_local_folder_backbone(tmp_path):
    folder = tmp_path / "my-backbone"
    shutil.copytree(HF_FIXTURES / "meta-llama--Llama-3.1-8B", folder)
    cfg, c, _ = build(ROOT / "recipes" / "llama3.1-8b_math.yaml", tmp_path, f"model.hf_path={folder}")
    assert (c.model.num_layers, c.model.hidden_size, c.model.num_query_groups) == (32, 4096, 8)
    assert c.tokenizer.tokenizer_model == str(folder)


@pytest.mark.parametrize("hf_path, message", [
    ("Qwen/No-Such-Model", "'Qwen/No-Such-Model' is not in the Hugging Face cache"),
    ("/nonexistent/backbone", "'/nonexistent/backbone': no config.json in that folder"),
])
def test_a_backbone_out_of_reach_is_one_line_after_the_recipe(capsys, hf_path, message):
    code, out, err = dry_run(capsys, ROOT / "recipes" / "qwen2.5-7b_medical.yaml", f"model.hf_path={hf_path}")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("nemo-beyond-nll: error: model.hf_path ") and message in err
    if hf_path.startswith("Qwen"):
        assert "model.hf_path=/path/to/folder" in err
    # The resolved recipe and the overrides were printed before Bridge was asked.
    assert f"hf_path: {hf_path}" in out and "#   model.tensor_model_parallel_size=2" in out


def test_bridge_rejections_are_one_line(capsys):
    code, _, err = dry_run(capsys, ROOT / "recipes" / "qwen2.5-7b_medical.yaml", "launch.nproc_per_node=3")
    assert code == 2 and err.count("\n") == 1 and "= 2 does not divide the 3 GPUs of launch.nnodes" in err
    with pytest.raises(ConfigError, match="validate\\(\\) rejects the config"):
        from nemo_beyond_nll.engines.bridge.finetune import build_config

        build_config(load_recipe(ROOT / "recipes" / "qwen2.5-7b_medical.yaml", ["model.seq_length=4095",
                     "model.context_parallel=2"]), write_dataset_links=False, iters=10)


def test_installing_the_package_changes_nothing_of_the_bridge_stack(tmp_path):
    """setup.py's requirements hold in Megatron-Bridge's environment: pip would add only the package."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "nemo_beyond_nll", source / "nemo_beyond_nll",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
                           "--quiet", "--report", str(report), str(source)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installs = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert installs == ["nemo_beyond_nll"]
