import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent
SUPPORT = TESTS / "support"
sys.path.insert(0, str(SUPPORT))
import rank_report  # noqa: E402  (tests/support, also on the workers' path)

# Triton decides at decoration time whether @triton.jit kernels are interpreted, so the switch must
# be set before anything imports nemo_beyond_nll.core.triton_kernels. Without a GPU, the interpreter is
# the only way the kernels run; torchrun workers inherit it through os.environ.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def run_torchrun(script: str, nproc: int, *args: str, timeout: int = 600) -> list:
    """Run tests/<script> under torchrun with `nproc` gloo workers; return each rank's report (the
    dict its main() returned, see tests/support/rank_report.py), in rank order. A worker's exception
    fails the test with that rank's traceback; so does an exit without a report."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += [str(TESTS / script), *args]
    with tempfile.TemporaryDirectory() as reports:
        path = os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path,
               rank_report.REPORTS_ENV: reports}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        facts, errors = rank_report.read(Path(reports), nproc)
    if errors:
        rank = min(errors)
        pytest.fail(f"{script}: rank {rank} of {nproc} raised (ranks {sorted(errors)} did):\n{errors[rank]}",
                    pytrace=False)
    if proc.returncode != 0 or None in facts:
        missing = [r for r, f in enumerate(facts) if f is None]
        output = proc.stdout + proc.stderr
        pytest.fail(f"{script} with {nproc} ranks exited {proc.returncode}, no report from ranks {missing}:\n"
                    f"{output[-4000:]}")
    return facts


@pytest.fixture
def torchrun():
    return run_torchrun
