import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent

# Triton decides at decoration time whether @triton.jit kernels are interpreted, so the switch must
# be set before anything imports nemo_beyond_nll.core.triton_kernels. Without a GPU, the interpreter is
# the only way the kernels run; torchrun workers inherit it through os.environ.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def run_torchrun(script: str, nproc: int, *args: str, timeout: int = 600) -> str:
    """Run tests/<script> under torchrun with `nproc` gloo workers; fail the test on a non-zero exit."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += [str(TESTS / script), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"{script} with {nproc} ranks exited {proc.returncode}:\n{output[-4000:]}")
    return output


@pytest.fixture
def torchrun():
    return run_torchrun
