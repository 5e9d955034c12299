"""Run folders under faults: the CLI killed mid-run, a second run in the same folder, reruns that
disagree with the run, and files an interrupted write left behind. Each test starts real runs of
the CPU engine (torchrun, two gloo workers) at a tiny size; timeouts are hang guards only."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nemo_beyond_nll.utils.files import read_jsonl
from nemo_beyond_nll.utils.processes import live_processes_naming

RECIPE = str(Path(__file__).parents[1] / "recipes" / "tiny_cpu.yaml")
SMALL = ["data.num_train=256", "data.num_validation=8", "trainer.global_batch_size=16",
         "trainer.micro_batch_size=16", "trainer.save_interval=1000", "trainer.hist_interval=0",
         "model.tiny.hidden_size=32", "model.tiny.ffn_hidden_size=64", "model.tiny.num_layers=1"]
LONG = "trainer.max_steps=100000"  # never reached: these runs are stopped
GUARD = 300  # seconds: a hang guard, not a speed expectation


def start(run_dir: Path, *overrides, command="sft", recipe=RECIPE):
    """The CLI in its own session, as a user would start it; stdout and stderr into files."""
    out = open(run_dir.parent / f"{run_dir.name}.{time.monotonic_ns()}.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "nemo_beyond_nll.cli", command, "--config", recipe, *SMALL,
                             *overrides, f"checkpoint.dir={run_dir}"],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = out
    return proc


def finish(proc) -> tuple:
    rc = proc.wait(timeout=GUARD)
    proc.log.seek(0)
    return rc, proc.log.read()


def cli(run_dir: Path, *overrides, command="sft") -> tuple:
    return finish(start(run_dir, *overrides, command=command))


def wait_for(predicate, what: str, timeout: float = GUARD):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def trained_steps(run_dir: Path) -> list:
    try:
        return [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "train"]
    except (ValueError, OSError):  # a line being appended
        return []


def processes_of(run_dir: Path) -> list:
    """Pids of live processes whose command line names the run folder (the CLI, torchrun, workers)."""
    return live_processes_naming(str(run_dir))


def latest(run_dir: Path) -> int:
    return int((run_dir / "checkpoints" / "latest").read_text())


def assert_run_gone(run_dir: Path) -> None:
    wait_for(lambda: not processes_of(run_dir), "the run's processes to end")
    size = (run_dir / "metrics.jsonl").stat().st_size
    time.sleep(2)
    assert (run_dir / "metrics.jsonl").stat().st_size == size, "metrics.jsonl still grows"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal and /proc are Linux")
def test_sigkill_of_the_cli_takes_torchrun_and_workers_with_it_and_frees_the_folder(tmp_path):
    run_dir = tmp_path / "killed"
    proc = start(run_dir, LONG)
    wait_for(lambda: trained_steps(run_dir), "a training step")
    os.kill(proc.pid, signal.SIGKILL)
    assert finish(proc)[0] == -signal.SIGKILL
    assert_run_gone(run_dir)
    # The lock died with its holders: the next run in the folder starts and resumes.
    done = latest(run_dir)
    rc, log = cli(run_dir, f"trainer.max_steps={done + 1}")
    assert rc == 0, log[-3000:]
    assert f"from step {done} of {done + 1}" in log


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run stopped by SIGTERM to the CLI: (run folder, exit code, log)."""
    run_dir = tmp_path_factory.mktemp("faults") / "stopped"
    proc = start(run_dir, LONG)
    wait_for(lambda: trained_steps(run_dir), "a training step")
    os.kill(proc.pid, signal.SIGTERM)
    rc, log = finish(proc)
    return run_dir, rc, log


def test_sigterm_stops_the_run_cleanly_with_a_checkpoint(stopped):
    run_dir, rc, log = stopped
    assert rc == 128 + signal.SIGTERM, log[-3000:]
    done = latest(run_dir)
    assert log.rstrip().splitlines()[-1] == (f"nemo-beyond-nll: stopped by SIGTERM; checkpoint at step {done} in "
                                             f"{run_dir}: run the same command to resume")
    assert "Traceback" not in log and "SignalException" not in log, log[-3000:]  # torchrun stops quietly
    assert not processes_of(run_dir)
    for rank in (0, 1):
        state = torch.load(run_dir / "checkpoints" / f"step_{done:06d}" / f"rank_{rank:02d}.pt", weights_only=True)
        assert state["step"] == done
    assert trained_steps(run_dir)[-1] == done  # the workers finished the step they were in, then saved it
    assert read_jsonl(run_dir / "metrics.jsonl")[-1] == {"event": "stopped", "step": done}


def test_rerun_resumes_after_a_stop_sweeps_stale_files_and_keeps_the_old_config(stopped):
    run_dir, _, _ = stopped
    done = latest(run_dir)
    first_config = (run_dir / "config.yaml").read_text()
    # What a kill during a save leaves: an atomic write's temporary file, a step folder past `latest`.
    (run_dir / ".summary.json.x1y2.tmp").write_text("{")
    (run_dir / "checkpoints" / f"step_{done + 5:06d}").mkdir()
    (run_dir / "checkpoints" / f"step_{done + 5:06d}" / ".rank_00.pt.abc.tmp").write_bytes(b"\0")

    rc, log = cli(run_dir, f"trainer.max_steps={done + 1}")
    assert rc == 0, log[-3000:]
    assert f"from step {done} of {done + 1}" in log
    assert f"trainer.max_steps: 100000 -> {done + 1}" in log
    assert trained_steps(run_dir) == list(range(1, done + 2))
    assert not list(run_dir.rglob("*.tmp"))
    assert not (run_dir / "checkpoints" / f"step_{done + 5:06d}").exists()
    assert (run_dir / "config.1.yaml").read_text() == first_config
    history = read_jsonl(run_dir / "config_history.jsonl")
    assert history[-1]["changes"] == {"trainer.max_steps": [100000, done + 1]}
    assert "max_steps: " + str(done + 1) in (run_dir / "config.yaml").read_text()


def test_rerun_behind_the_checkpoint_or_with_another_objective_is_refused(stopped):
    run_dir, _, _ = stopped
    config = (run_dir / "config.yaml").read_text()
    done = latest(run_dir)
    rc, log = cli(run_dir, f"trainer.max_steps={done - 1}")
    assert rc == 2
    assert log.strip() == (f"nemo-beyond-nll: error: {run_dir} holds a checkpoint at step {done}, past "
                           f"trainer.max_steps={done - 1}: evaluate it with `nemo-beyond-nll eval`, continue with "
                           f"trainer.max_steps>={done}, or start a new run with another checkpoint.dir")
    rc, log = cli(run_dir, f"trainer.max_steps={done}", "model.loss=neg_p")
    assert rc == 2 and "model.loss ('nll' -> 'neg_p')" in log and len(log.strip().splitlines()) == 1
    assert (run_dir / "config.yaml").read_text() == config  # refused before anything was written


def test_ctrl_c_stops_the_run_with_exit_code_130(tmp_path):
    run_dir = tmp_path / "interrupted"
    proc = start(run_dir, LONG)
    wait_for(lambda: trained_steps(run_dir), "a training step")
    os.kill(proc.pid, signal.SIGINT)
    rc, log = finish(proc)
    assert rc == 130, log[-3000:]
    assert "nemo-beyond-nll: SIGINT: stopping after the current step" in log
    assert log.rstrip().splitlines()[-1].startswith(f"nemo-beyond-nll: stopped by SIGINT; checkpoint at step "
                                                    f"{latest(run_dir)} in {run_dir}")
    assert not processes_of(run_dir)


HOLDER = ("import sys, time; from nemo_beyond_nll.run_folder import acquire; acquire(sys.argv[1], 'the holder'); "
          "print('locked', flush=True); time.sleep(600)")


@pytest.mark.parametrize("command", ["sft", "eval", "probe", "continuum"])
def test_second_run_in_a_locked_folder_fails_at_once_naming_the_holder(tmp_path, command):
    run_dir = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "latest").write_text("1\n")  # so that eval gets as far as the run folder
        rc, log = cli(run_dir, command=command)
        assert rc == 2
        assert log.strip().startswith(f"nemo-beyond-nll: error: run folder {run_dir} is in use by pid {holder.pid} on ")
        assert "`the holder`" in log and len(log.strip().splitlines()) == 1
        assert not (run_dir / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
