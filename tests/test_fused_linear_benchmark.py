"""The fused-linear benchmark runs end to end and sees the memory the fused path saves."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "fused_linear_benchmark.py"


def test_benchmark_runs_and_fused_needs_less_memory(tmp_path):
    # A fresh process: resident-memory peaks mean nothing in one whose heap earlier tests have grown.
    # 1024 x 32768 fp32 logits are 128 MiB; the fused path holds 2048 columns' worth (8 MiB) at a
    # time. Sizes well above the allocator's noise (tens of MiB on a loaded machine).
    args = ["--tokens", "1024", "--hidden", "32", "--vocab", "32768", "--chunk-vocab", "2048",
            "--repeats", "1", "--device", "cpu", "--out", str(tmp_path)]
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    table = next(tmp_path.glob("fused_linear_cpu_*.md")).read_text()
    transient = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("unfused", "fused"):
            transient[cells[0]] = float(cells[4])
    assert transient["unfused"] > 100  # it did see the logits
    assert transient["fused"] < transient["unfused"] / 2
