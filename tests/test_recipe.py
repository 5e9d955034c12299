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
    if path.stem.endswith("_math"):
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
        ("data:\n  domain: math\n", "data.domain: Key .domain. not in"),  # removed keys are unknown keys
        ("eval:\n  backend: vllm\n", "eval.backend: Key .backend. not in"),
        ("bridge:\n  container: nvcr.io/nvidia/nemo:26.04\n", "bridge.container: Key .container. not in"),
        ("trainer:\n  max_stepz: 3\n", "max_stepz"),
        ("trainer:\n  global_batch_size: 10\n  micro_batch_size: 3\n", "not a multiple"),
        ("optim:\n  warmup_ratio: 1.5\n", "warmup_ratio"),
        ("optim:\n  betas: [0.9]\n", "betas"),
        ("model:\n  tensor_parallel: 0\n", "tensor_parallel"),
        ("engine: bridge\n", "model.hf_path is required"),
        ("engine: cpu\nmodel:\n  pipeline_parallel: 2\n", "pipeline_parallel must be 1"),
        ("trainer:\n  max_steps: notanumber\n", "max_steps"),
        ("model:\n  loss_fusion: cut\n", "model.loss_fusion must be null or linear"),
        ("model:\n  loss_fusion: linear\n  check_finite: true\n", "model.check_finite needs the logits"),
    ],
)
def test_invalid_recipes_name_the_problem(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text("engine: cpu\n" + text if not text.startswith("engine") else text)
    with pytest.raises(ConfigError, match=message) as err:
        load_recipe(path)
    assert "\n" not in str(err.value)


# Every numeric key of the schema, with a value out of its range; the message names the key.
BAD_VALUES = [
    ("model.tensor_parallel", 0), ("model.pipeline_parallel", 0), ("model.context_parallel", 0),
    ("model.virtual_pipeline_parallel", 0), ("model.seq_length", 1), ("model.tiny.hidden_size", 0),
    ("model.tiny.num_layers", 0), ("model.tiny.num_attention_heads", 0), ("model.tiny.ffn_hidden_size", 0),
    ("model.tiny.hidden_size", 130), ("model.tiny.num_attention_heads", 3), ("model.tiny.ffn_hidden_size", 511),
    ("data.noise", -0.1), ("data.noise", 1.5), ("data.num_train", 0), ("data.num_validation", 0), ("data.seed", -1),
    ("data.task", "unsort"), ("trainer.max_steps", 0), ("trainer.max_steps", -5), ("trainer.epochs", 0),
    ("trainer.global_batch_size", 0), ("trainer.micro_batch_size", 0), ("trainer.global_batch_size", 100),
    ("trainer.seed", -1), ("trainer.log_interval", 0), ("trainer.eval_interval", -1), ("trainer.save_interval", 0),
    ("trainer.hist_interval", -1), ("optim.lr", -1), ("optim.lr", 0), ("optim.min_lr", -1e-5), ("optim.min_lr", 1.0),
    ("optim.warmup_ratio", 1.0), ("optim.warmup_ratio", -0.1), ("optim.betas", [0.9, 1.5]), ("optim.weight_decay", -0.01),
    ("optim.grad_clip", -1), ("optim.schedule", "step"), ("launch.nnodes", 0), ("launch.nproc_per_node", 0),
    ("eval.max_new_tokens", 0), ("eval.num_samples", 0), ("continuum.pretrain_steps", 0),
    ("continuum.pretrain_lr", 0), ("continuum.pretrain_task", "copy+nope"), ("continuum.strong.steps", 0),
    ("continuum.strong.noise", 2.0), ("continuum.weak.task", "nope"), ("continuum.weak.noise", -1),
    ("continuum.weak.steps", 0), ("continuum.seeds", []), ("continuum.objectives", ["nll", "focal"]),
]


@pytest.mark.parametrize("key, value", BAD_VALUES, ids=[f"{k}={v}" for k, v in BAD_VALUES])
def test_every_numeric_key_is_range_checked(capsys, key, value):
    from nemo_beyond_nll.cli import main

    tiny = str(Path(__file__).parents[1] / "recipes" / "tiny_cpu.yaml")  # micro batch 64 in global 64 at TP=2
    override = f"{key}={value}".replace("'", "") if not isinstance(value, list) else f"{key}=[{','.join(map(str, value))}]"
    assert main(["sft", "--config", tiny, "--dry-run", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nemo-beyond-nll: error: ") and err.count("\n") == 1
    assert key.rsplit(".", 1)[-1] in err and key.split(".")[0] in err, err


@pytest.mark.parametrize("overrides, message", [
    (["launch.nproc_per_node=6"], "model.tensor_parallel x pipeline_parallel x context_parallel = 8 does not divide the 6 GPUs"),
    (["launch.nnodes=3"], "trainer.global_batch_size=256 is not a multiple of trainer.micro_batch_size=1 x data-parallel size 12"),
    (["trainer.micro_batch_size=3"], "trainer.global_batch_size=256 is not a multiple of trainer.micro_batch_size=3"),
])
def test_gpu_parallel_sizes_fit_the_world(overrides, message):
    recipe = Path(__file__).parents[1] / "recipes" / "llama3.1-8b_math.yaml"  # TP=2 on 1 x 8 GPUs
    base = ["model.tensor_parallel=8"] if "divide" in message else []
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(recipe, base + overrides)


def test_cpu_validation_file_is_required_with_a_train_file(tmp_path):
    with pytest.raises(ConfigError, match="data.validation is required"):
        load_recipe(Path(__file__).parents[1] / "recipes" / "tiny_cpu.yaml", [f"data.train={tmp_path}/t.jsonl"])


GPU_RECIPE = Path(__file__).parents[1] / "recipes" / "qwen2.5-math-7b_math.yaml"
FOREIGN_RECIPE = "os.getcwd"  # any importable zero-argument callable outside Megatron-Bridge's recipes


def test_a_recipe_function_outside_megatron_bridge_is_refused_naming_the_opt_in(capsys):
    from nemo_beyond_nll.cli import main

    with pytest.raises(ConfigError) as err:
        load_recipe(GPU_RECIPE, [f"bridge.recipe={FOREIGN_RECIPE}"])
    assert str(err.value) == (f"bridge.recipe '{FOREIGN_RECIPE}' is not one of Megatron-Bridge's recipe functions "
                              f"(megatron.bridge.recipes.*): calling it runs code the recipe names; "
                              f"set bridge.trust_recipe_code=true if you trust it")
    # A dry run refuses it too, in one line, before anything else is printed.
    assert main(["sft", "--config", str(GPU_RECIPE), "--dry-run", f"bridge.recipe={FOREIGN_RECIPE}"]) == 2
    out, errors = capsys.readouterr()
    assert out == "" and errors.count("\n") == 1 and "bridge.trust_recipe_code=true" in errors


def test_a_trusted_recipe_function_and_megatron_bridges_own_are_accepted():
    cfg = load_recipe(GPU_RECIPE, [f"bridge.recipe={FOREIGN_RECIPE}", "bridge.trust_recipe_code=true"])
    assert cfg.bridge.recipe == FOREIGN_RECIPE and cfg.bridge.trust_recipe_code
    assert not load_recipe(GPU_RECIPE).bridge.trust_recipe_code  # the paper's recipes need no opt-in
    with pytest.raises(ConfigError, match="megatron.bridge.recipes"):  # a look-alike prefix is not Bridge's
        load_recipe(GPU_RECIPE, ["bridge.recipe=megatron.bridge.recipesx.fn"])
