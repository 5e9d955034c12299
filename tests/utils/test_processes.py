import os
import signal
import subprocess
import sys
import time

import pytest

# A parent that starts a child arming the parent-death signal, prints the child's pid, and sleeps.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; from nemo_beyond_nll.utils.processes import arm_parent_death_signal; "
    "assert arm_parent_death_signal(signal.SIGTERM); print('armed', flush=True); time.sleep(600)"],
    stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == 'armed'
print(child.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "zombie" not in f.read()
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux")
def test_child_dies_when_its_parent_is_killed_with_sigkill():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert alive(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60  # hang guard
    while alive(child):
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.1)
