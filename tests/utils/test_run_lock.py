import os
import signal
import subprocess
import sys

import pytest

from nemo_beyond_nll.utils.run_lock import LOCK_NAME, RunLocked, acquire, release

HOLD = ("import sys, time; from nemo_beyond_nll.utils.run_lock import acquire; acquire(sys.argv[1], 'holding it'); "
        "print('locked', flush=True); time.sleep(600)")


def hold(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_holder_is_refused_with_the_first_named(tmp_path):
    holder = hold(tmp_path)
    try:
        with pytest.raises(RunLocked, match=rf"in use by pid {holder.pid} on .*`holding it`, since"):
            acquire(tmp_path)
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = hold(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / LOCK_NAME).exists()  # the file stays; the kernel dropped the lock
    fd = acquire(tmp_path, "next run")
    assert acquire(tmp_path) == fd  # idempotent within one process
    assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_NAME).read_text()
    release(tmp_path)


def test_release_lets_another_process_take_it(tmp_path):
    acquire(tmp_path / "run")
    release(tmp_path / "run")
    holder = hold(tmp_path / "run")
    holder.kill()
    holder.wait()
