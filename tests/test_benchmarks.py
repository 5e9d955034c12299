"""The loss benchmark runs end to end at a tiny size and reports ratios against Megatron and the paper."""

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_loss_benchmark_smoke(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/loss_benchmark.py"), "--tokens", "64", "--vocab", "256", "512",
           "--repeats", "1", "--objectives", "nll", "neg_p", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "loss_cpu_grid.csv")))
    methods = {(r["vocab"], r["method"], r["objective"]) for r in rows}
    for vocab in ("256", "512"):
        for method in ("megatron", "megatron_fused", "torch", "torch_compile"):
            assert (vocab, method, "nll") in methods
        for name in ("nll", "neg_p"):
            assert (vocab, "paper", name) in methods and (vocab, "ours", name) in methods
    megatron = [r for r in rows if r["method"] == "megatron"]
    assert all(float(r["time_vs_megatron"]) == 1.0 for r in megatron)
    assert "| fp32 | 64 | 256 | ours | nll |" in proc.stdout
    # Liger's kernels need CUDA: skipped with its reason, in the table printed and the one written.
    assert "- liger: RuntimeError: its kernels need CUDA" in proc.stdout
    assert "- liger:" in (tmp_path / "loss_cpu_grid.md").read_text()
    assert (tmp_path / "loss_cpu_grid.png").read_bytes()[:4] == b"\x89PNG"
