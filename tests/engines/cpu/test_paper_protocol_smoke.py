"""The CPU engine with the paper's training protocol: micro-batch reduction, drop_last, right truncation."""

import subprocess
from pathlib import Path

from nemo_beyond_nll.utils.files import read_jsonl, write_jsonl

RECIPE = str(Path(__file__).parents[3] / "recipes" / "tiny_cpu.yaml")


def test_micro_batch_reduction_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    # 100 rows in batches of 32: 3 steps with drop_last (4 without); every fifth row is longer than
    # seq_length=32 and is cut at its end; micro-batches of 8 rows keep different token counts.
    train = [{"prompt": f"copy {i % 7}=", "completion": "ab" * (20 if i % 5 == 0 else 1 + i % 4)} for i in range(100)]
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "validation.jsonl", [{"prompt": "copy 1=", "completion": "ab"}] * 4)
    args = ["sft", "--config", RECIPE, "model.loss_reduction=micro_batch", "data.drop_last=true",
            "data.truncate=right", f"data.train={tmp_path / 'train.jsonl'}",
            f"data.validation={tmp_path / 'validation.jsonl'}",
            "trainer.max_steps=null", "trainer.global_batch_size=32", "trainer.micro_batch_size=8",
            "trainer.hist_interval=0", "model.tiny.hidden_size=32", "model.tiny.ffn_hidden_size=64",
            f"checkpoint.dir={run_dir}"]
    proc = subprocess.run(["nemo-beyond-nll", *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    train = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(r["loss"] > 0 for r in train)
    assert (run_dir / "summary.json").is_file()
