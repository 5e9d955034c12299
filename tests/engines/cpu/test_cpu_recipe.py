"""The CPU main job end to end, small: train, files, resume, evaluate (each run starts torchrun)."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from nemo_beyond_nll.utils.files import read_jsonl

RECIPE = str(Path(__file__).parents[3] / "recipes" / "tiny_cpu.yaml")
SMALL = ["data.num_train=512", "data.num_validation=16", "trainer.global_batch_size=32",
         "trainer.micro_batch_size=16", "trainer.save_interval=3", "trainer.hist_interval=2",
         "model.tiny.hidden_size=64", "model.tiny.ffn_hidden_size=128"]


def cli(*args):
    proc = subprocess.run(["nemo-beyond-nll", *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cpu") / "run"
    log = cli("sft", "--config", RECIPE, *SMALL, "trainer.max_steps=6", f"checkpoint.dir={run_dir}")
    return run_dir, log


def test_trains_and_writes_its_files(run):
    run_dir, log = run
    train = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert train[-1]["loss"] < train[0]["loss"] - 0.5, "the loss should fall"
    assert all(r["kept_fraction"] == 1.0 for r in train)  # nll keeps every completion token
    hist = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "prob_hist"]
    assert [r["step"] for r in hist] == [0, 2, 4, 6]
    assert hist[-1]["mean_p"] > hist[0]["mean_p"]
    assert (run_dir / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "6"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["accuracy"]) == {"sort"} and summary["num_samples"]["sort"] == 16
    assert len(read_jsonl(run_dir / "eval" / "samples.jsonl")) == 16
    assert "held-out sort: accuracy" in log
    assert not list(run_dir.rglob("*.tmp")), "no half-written files"


def test_rerun_resumes_from_the_last_checkpoint(run):
    run_dir, _ = run
    log = cli("sft", "--config", RECIPE, *SMALL, "trainer.max_steps=9", f"checkpoint.dir={run_dir}")
    assert "from step 6 of 9" in log
    train = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "train"]
    assert train == list(range(1, 10))
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "9"
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step_*")) == ["step_000006", "step_000009"]


def test_eval_command_reevaluates_the_checkpoint(run):
    run_dir, _ = run
    (run_dir / "summary.json").unlink()
    log = cli("eval", "--config", RECIPE, *SMALL, f"checkpoint.dir={run_dir}")
    assert "held-out sort: accuracy" in log and (run_dir / "summary.json").exists()


def test_threshold_objective_reports_kept_fraction(tmp_path):
    run_dir = tmp_path / "thr"
    cli("sft", "--config", RECIPE, *SMALL, "trainer.max_steps=2", f"checkpoint.dir={run_dir}",
        "model.loss=OnlyTopP-0.008")
    train = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "train"]
    assert 0.0 < train[0]["kept_fraction"] < 1.0
    assert json.loads((run_dir / "summary.json").read_text())["loss"] == "neg_p_threshold"


def test_fused_output_layer_from_the_recipe_matches_unfused(tmp_path):
    losses = {}
    for fusion in ("null", "linear"):
        run_dir = tmp_path / fusion
        cli("sft", "--config", RECIPE, *SMALL, "trainer.max_steps=3", f"checkpoint.dir={run_dir}",
            "model.loss=neg_p", f"model.loss_fusion={fusion}")
        losses[fusion] = [r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "train"]
    assert len(losses["linear"]) == 3
    assert losses["linear"] == pytest.approx(losses["null"], rel=1e-4)


def test_threshold_that_keeps_nothing_is_warned_about_once(tmp_path):
    run_dir = tmp_path / "thr_none"
    log = cli("sft", "--config", RECIPE, *SMALL, "trainer.max_steps=7", f"checkpoint.dir={run_dir}",
              "model.loss=neg_p_threshold", "model.loss_args.threshold=0.9")
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert all(r["kept_fraction"] == 0.0 for r in records if r["event"] == "train")
    warnings = [r for r in records if r["event"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["step"] == 5
    assert warnings[0]["message"].startswith("WARNING: neg_p_threshold(threshold=0.9, keep=above) keeps no token at "
                                             "steps 1-5 (kept fraction 0, threshold 0.9, mean p 0.0")
    assert log.count("keeps no token") == 1 and warnings[0]["message"] in log
    assert json.loads((run_dir / "summary.json").read_text())["warnings"] == [warnings[0]["message"]]


def test_auto_chooses_once_and_a_resumed_run_keeps_the_choice(tmp_path):
    from nemo_beyond_nll.probe import auto_choice

    run_dir = tmp_path / "auto"
    dry = subprocess.run(["nemo-beyond-nll", "sft", "--config", RECIPE, "model.loss=auto", "--dry-run"],
                         capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0 and "# objective: auto: chosen at start-up" in dry.stdout
    log = cli("sft", "--config", RECIPE, *SMALL, "model.loss=auto", "model.auto_batches=2", "trainer.max_steps=2",
              f"checkpoint.dir={run_dir}")
    choice = json.loads((run_dir / "auto.json").read_text())
    # a random tiny model gives every target p ~ 1/vocabulary: the weak end, nll
    assert choice["loss"] == "nll" and choice["placement"] == "weak" and choice["batches"] == 2
    assert choice["mean_p"] < 0.05 and choice["num_tokens"] > 100
    assert log.count("model.loss=auto: mean p") == 1 and "weak end -> model.loss=nll" in log
    events = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "auto"]
    assert len(events) == 1 and events[0]["loss"] == "nll" and events[0]["step"] == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["auto"] == choice and summary["objective"] == "nll()"
    # The decision is the probe's rule on the statistics it recorded.
    rule = auto_choice(torch.full((choice["num_tokens"],), choice["mean_p"], dtype=torch.float64), batches=2)
    assert (rule.loss, rule.placement) == (choice["loss"], choice["placement"])
    log = cli("sft", "--config", RECIPE, *SMALL, "model.loss=auto", "model.auto_batches=2", "trainer.max_steps=4",
              f"checkpoint.dir={run_dir}")
    assert "from step 2 of 4" in log and "model.loss=auto: mean p" not in log  # never probes again
    assert json.loads((run_dir / "auto.json").read_text()) == choice
    assert len([r for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "auto"]) == 1
    (run_dir / "summary.json").unlink()
    log = cli("eval", "--config", RECIPE, *SMALL, "model.loss=auto", f"checkpoint.dir={run_dir}")
    assert json.loads((run_dir / "summary.json").read_text())["objective"] == "nll()"

