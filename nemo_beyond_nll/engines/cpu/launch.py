"""Start the CPU engine's workers under torchrun and supervise them until they end.

The run folder stays locked while torchrun lives (it inherits the lock's open file). torchrun runs in
its own session with the parent-death signal armed: if this process is killed, even with SIGKILL,
torchrun gets SIGTERM and stops its workers (which in turn die if torchrun dies). SIGTERM, SIGINT or
SIGHUP here is forwarded once as SIGTERM (a second one kills torchrun); training workers finish the
current step, save a checkpoint and exit; the exit code is then 128+signal.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys

from ...config import ConfigError
from ...run_folder import TRAINING_MODES, RunFolder, check_resumable, held, record_config

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def check_data(cfg) -> None:
    """The recipe's split files are complete (before the lock: a refused run leaves no trace)."""
    from ...data.pipeline import IncompleteData, check_complete

    for split in ("train", "validation"):
        try:
            if cfg.data.get(split):
                check_complete(cfg.data[split])
        except IncompleteData as err:
            raise ConfigError(str(err)) from None


def worker_command(cfg, config_path, mode: str) -> list:
    # torchrun through engines.torchrun: stopped by a signal, it ends without a traceback, so that
    # the stop line report_stop prints is the last thing of the run.
    return [sys.executable, "-m", "nemo_beyond_nll.engines.torchrun", "--standalone",
            f"--nproc_per_node={cfg.model.tensor_parallel}", "-m", "nemo_beyond_nll.engines.cpu.worker",
            str(config_path), mode]


def start_torchrun(cmd: list, folder: RunFolder, lock_fd: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore"),
           "TORCHELASTIC_ERROR_FILE": str(folder.worker_error)}
    from ...utils.processes import arm_parent_death_signal

    return subprocess.Popen(cmd, env=env, start_new_session=True, pass_fds=(lock_fd,) if lock_fd >= 0 else (),
                            preexec_fn=functools.partial(arm_parent_death_signal, signal.SIGTERM, os.getpid()))


def wait_forwarding_signals(proc: subprocess.Popen) -> tuple:
    """Wait for `proc`, forwarding FORWARDED signals to it; returns (exit code, signals received)."""
    received = []

    def forward(signum, _frame):
        received.append(signum)
        if len(received) == 1:
            print(f"nemo-beyond-nll: {signal.Signals(signum).name}: stopping after the current step "
                  f"(again to stop at once)", file=sys.stderr, flush=True)
        try:
            os.kill(proc.pid, signal.SIGTERM if len(received) == 1 else signal.SIGKILL)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code, received


def report_stop(received: list, folder: RunFolder, mode: str) -> int:
    """The one line a stopped run prints (where to resume from); returns 128 + the first signal."""
    name = signal.Signals(received[0]).name
    done = folder.latest_step()
    where = (f"; checkpoint at step {done} in {folder.root}: run the same command to resume"
             if mode in TRAINING_MODES and done is not None else "")
    print(f"nemo-beyond-nll: stopped by {name}{' (twice: at once)' if len(received) > 1 else ''}{where}",
          file=sys.stderr)
    return 128 + received[0]


def launch_workers(cfg, mode: str) -> int:
    """Check the data, lock the run folder, record the config and run one gloo worker per
    tensor-parallel rank under torchrun until they end."""
    check_data(cfg)
    folder = RunFolder.of(cfg)
    with held(folder.root) as lock_fd:
        if mode == "train":
            check_resumable(cfg)
        config_path = record_config(cfg, mode)
        proc = start_torchrun(worker_command(cfg, config_path, mode), folder, lock_fd)
        code, received = wait_forwarding_signals(proc)
    return report_stop(received, folder, mode) if received else code
