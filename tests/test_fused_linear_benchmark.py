"""The fused-linear benchmark runs end to end and sees the memory the fused path saves."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "fused_linear_benchmark.py"


def test_benchmark_runs_and_fused_needs_less_memory(tmp_path):
    # A fresh process: resident-memory peaks mean nothing in one whose heap earlier tests have grown.
    # 1024 x 65536 fp32 logits are 256 MiB; the fused path holds 2048 columns' worth (8 MiB) at a
    # time. glibc's heap may keep freed blocks resident (its mmap threshold grows as blocks are
    # freed), which made a fused step read anything from 8 to 113 MiB here; a fixed threshold makes
    # every block above 1 MiB its own mapping, returned when freed, so the peak is the live memory.
    args = ["--tokens", "1024", "--hidden", "32", "--vocab", "65536", "--chunk-vocab", "2048",
            "--repeats", "3", "--device", "cpu", "--out", str(tmp_path)]
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(2**20)})
    table = next(tmp_path.glob("fused_linear_cpu_*.md")).read_text()
    transient = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("unfused", "fused"):
            transient[cells[0]] = float(cells[5])  # transient MiB, median
    assert transient["unfused"] > 200  # it did see the logits
    assert transient["fused"] < transient["unfused"] / 8  # 8 MiB of columns at a time against 256
