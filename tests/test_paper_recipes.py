"""recipes/paper/: the paper's protocol item by item, and `reproduce` listing every job."""

import subprocess
from pathlib import Path

import pytest

from nemo_beyond_nll.recipe import load_recipe
from nemo_beyond_nll.reproduce import PAPER_DIR, load_tables, run_table, table_jobs

TABLE = {  # domain: (backbones, max length, weight decay, data family per backbone)
    "math": ({"Qwen/Qwen2.5-Math-1.5B", "Qwen/Qwen2.5-Math-7B", "meta-llama/Llama-3.1-8B",
              "deepseek-ai/deepseek-math-7b-base"}, 3072, 0.01),
    "medical": ({"Qwen/Qwen2.5-1.5B", "Qwen/Qwen2.5-Math-7B", "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.2-3B"}, 800, 0.01),
    "figfont": ({"Qwen/Qwen2.5-1.5B", "Qwen/Qwen2.5-7B", "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.2-3B"}, 800, 1e-5),
}
RECIPES = sorted(PAPER_DIR.glob("*_*.yaml"))


@pytest.mark.parametrize("domain", TABLE)
def test_each_table_has_its_backbones(domain):
    backbones = {load_recipe(p).model.hf_path for p in RECIPES if load_recipe(p).data.domain == domain}
    assert backbones == TABLE[domain][0]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_follows_the_paper_protocol(path):
    cfg = load_recipe(path)
    _, length, decay = TABLE[cfg.data.domain]
    assert cfg.model.seq_length == length and cfg.optim.weight_decay == decay
    assert cfg.model.loss_reduction == "micro_batch" and cfg.data.drop_last and cfg.data.truncate == "right"
    assert cfg.trainer.global_batch_size == 256 and cfg.trainer.epochs == 1
    assert cfg.trainer.micro_batch_size == (4 if cfg.data.domain == "math" else 16)
    assert cfg.optim.lr == (2e-5 if cfg.model.hf_path == "meta-llama/Llama-3.1-8B" else 5e-5)
    assert cfg.optim.warmup_ratio == 0.1 and list(cfg.optim.betas) == [0.9, 0.95] and cfg.optim.grad_clip == 1.0
    family = "llama" if "llama" in cfg.model.hf_path.lower() else "deepseek" if "deepseek" in cfg.model.hf_path else "qwen"
    assert cfg.data.train == f"data/paper/{cfg.data.domain}_{family}/train.jsonl"
    assert f"--protocol paper --family {family}" in path.read_text()
    assert cfg.bridge.recipe.startswith("megatron.bridge.recipes.")
    if cfg.data.domain == "math":
        assert cfg.eval.num_generations == 16 and cfg.eval.temperature == 1.0
    if cfg.data.domain == "figfont":
        assert cfg.eval.benchmark_files["figfont"] == f"data/paper/figfont_{family}/test.jsonl"


def test_tables_name_existing_recipes():
    for table, entry in load_tables()["tables"].items():
        for recipe in entry["recipes"]:
            assert (PAPER_DIR / f"{recipe}.yaml").is_file(), recipe


def test_jobs_cover_backbones_times_objectives():
    jobs = table_jobs("math")
    assert len(jobs) == 4 * len(load_tables()["objectives"])
    assert len({j.run_dir for j in jobs}) == len(jobs)
    assert {j.cfg.model.loss for j in jobs} == {"nll", "neg_p", "neg_p_power", "neg_p_threshold", "nll_threshold"}


def test_run_table_skips_finished_jobs_and_compares(tmp_path):
    import json

    calls = []

    def sft(cfg):
        calls.append(("sft", cfg.checkpoint.dir))
        return 0

    def evaluate(cfg):
        calls.append(("eval", cfg.checkpoint.dir))
        Path(cfg.checkpoint.dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.checkpoint.dir) / "summary.json").write_text(json.dumps(
            {"objective": cfg.model.loss, "accuracy": {"figfont": 0.5}}))
        return 0

    extra = [f"checkpoint.dir={tmp_path}/runs/${{name}}"]
    jobs = table_jobs("figfont", extra=extra)
    Path(jobs[0].run_dir).mkdir(parents=True)
    (jobs[0].run_dir / "summary.json").write_text('{"objective": "nll", "accuracy": {"figfont": 0.9}}')
    table = run_table("figfont", sft, evaluate, tmp_path / "cmp", extra=extra)
    assert ("sft", str(jobs[0].run_dir)) not in calls and len(calls) == 2 * (len(jobs) - 1)
    assert "figfont" in table and (tmp_path / "cmp" / "published.md").is_file()


def test_cli_dry_run_lists_every_job():
    proc = subprocess.run(["nemo-beyond-nll", "reproduce", "medical", "--dry-run"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("## ") == 4 * len(load_tables()["objectives"])
    assert "loss_reduction: micro_batch" in proc.stdout
