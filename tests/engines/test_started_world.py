"""The world-size checks run again at start-up, in every rank, on the processes torchrun really
started (WORLD_SIZE), before any process group or model: one line from LOCAL_RANK 0, exit 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from nemo_beyond_nll.recipe import load_recipe

ROOT = Path(__file__).parents[2]
TINY = ROOT / "recipes" / "tiny_cpu.yaml"
GPU = ROOT / "recipes" / "qwen2.5-math-7b_math.yaml"
GUARD = 300  # seconds: a hang guard only
LINE = ("nemo-beyond-nll: error: model.tensor_parallel x pipeline_parallel x context_parallel = 2 does not divide "
        "the 3 processes torchrun started (WORLD_SIZE)\n")


def started(cmd, local_rank: str, world: str = "3"):
    """`cmd` as torchrun would start one of its processes (no rendezvous to join: none may be tried)."""
    env = {**os.environ, "WORLD_SIZE": world, "RANK": local_rank, "LOCAL_RANK": local_rank,
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "9"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=GUARD)


def test_a_cpu_worker_started_on_a_world_that_does_not_fit_the_recipe_exits_2_in_one_line(tmp_path):
    cfg = load_recipe(TINY, [f"checkpoint.dir={tmp_path}"])  # tensor_parallel 2, one process per rank
    OmegaConf.save(cfg, tmp_path / "config.yaml", resolve=True)
    cmd = [sys.executable, "-m", "nemo_beyond_nll.engines.cpu.worker", str(tmp_path / "config.yaml"), "train"]
    first = started(cmd, "0")
    assert (first.returncode, first.stderr) == (2, LINE)
    other = started(cmd, "1")
    assert (other.returncode, other.stderr) == (2, "")  # printed once, by LOCAL_RANK 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # no metrics, no checkpoint: nothing ran


def _rows(path: Path) -> str:
    path.write_text(json.dumps({"prompt": "1+1=", "completion": "2"}) + "\n")
    return str(path)


def test_a_bridge_sft_started_by_hand_on_another_world_exits_2_in_one_line(tmp_path):
    """launch says 1 x 8 GPUs (TP=2 divides it), but torchrun started 3 processes."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "nemo_beyond_nll", "sft", "--config", str(GPU), f"checkpoint.dir={run_dir}",
           f"data.train={_rows(tmp_path / 'train.jsonl')}", f"data.validation={_rows(tmp_path / 'validation.jsonl')}"]
    first = started(cmd, "0")
    assert (first.returncode, first.stderr) == (2, LINE)
    other = started(cmd, "1")
    assert (other.returncode, other.stderr) == (2, "")
    assert not run_dir.exists()  # before the run folder is locked, and so before Megatron-Bridge or a model


def test_a_world_that_fits_but_breaks_the_global_batch_is_refused_too(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "nemo_beyond_nll", "sft", "--config", str(GPU), f"checkpoint.dir={run_dir}",
           "trainer.global_batch_size=8", f"data.train={_rows(tmp_path / 'train.jsonl')}",
           f"data.validation={_rows(tmp_path / 'validation.jsonl')}"]
    proc = started(cmd, "0", world="6")  # TP=2: data-parallel size 3, and 8 is no multiple of 1 x 3
    assert (proc.returncode, proc.stderr) == (2, "nemo-beyond-nll: error: trainer.global_batch_size=8 is not a "
                                                 "multiple of trainer.micro_batch_size=1 x data-parallel size 3\n")
