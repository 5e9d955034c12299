"""The run folder: its lock, and the config history a rerun keeps."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_beyond_nll.recipe import load_recipe
from nemo_beyond_nll.run_folder import LOCK, RunLocked, RunRefused, acquire, config_changes, held, record_config, release

TINY = str(Path(__file__).parents[1] / "recipes" / "tiny_cpu.yaml")
HOLD = ("import sys, time; from nemo_beyond_nll.run_folder import acquire; acquire(sys.argv[1], 'holding it'); "
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
    assert (tmp_path / LOCK).exists()  # the file stays; the kernel dropped the lock
    fd = acquire(tmp_path, "next run")
    assert f'"pid": {os.getpid()}' in (tmp_path / LOCK).read_text()
    release(fd)


def test_one_process_takes_a_folder_once_until_it_releases_it(tmp_path):
    fd = acquire(tmp_path, "first")
    with pytest.raises(RunLocked, match=rf"in use by pid {os.getpid()} on .*`first`"):
        acquire(tmp_path)
    release(fd)
    release(acquire(tmp_path))


def test_release_lets_another_process_take_it(tmp_path):
    release(acquire(tmp_path / "run"))
    holder = hold(tmp_path / "run")
    holder.kill()
    holder.wait()


def test_held_locks_on_rank_zero_only_and_releases_after(tmp_path, monkeypatch):
    with held(tmp_path) as fd:
        assert fd >= 0
        with pytest.raises(RunLocked):
            acquire(tmp_path)
    release(acquire(tmp_path))
    monkeypatch.setenv("RANK", "1")
    with held(tmp_path) as fd:
        assert fd == -1


def test_config_changes_lists_every_changed_leaf():
    old = {"a": 1, "b": {"c": 2, "d": {}}, "e": [1]}
    new = {"a": 1, "b": {"c": 3, "d": {"x": 1}}, "f": None}
    assert config_changes(old, new) == {"b.c": (2, 3), "b.d": ({}, None), "b.d.x": (None, 1), "e": ([1], None)}


def test_run_config_is_kept_and_changes_are_recorded(tmp_path, capsys):
    run_dir = tmp_path / "run"
    cfg = lambda *o: load_recipe(TINY, [f"checkpoint.dir={run_dir}", *o])  # noqa: E731
    with held(run_dir):  # as a command takes it
        record_config(cfg(), "train")
        first = (run_dir / "config.yaml").read_text()
        record_config(cfg(), "train")  # the same config: nothing to record
        assert not (run_dir / "config_history.jsonl").exists()
        record_config(cfg("trainer.max_steps=400", "optim.lr=0.001"), "train")
        err = capsys.readouterr().err.splitlines()
        assert err == [f"nemo-beyond-nll: {run_dir}: optim.lr: 0.003 -> 0.001 (earlier config kept as config.1.yaml)",
                       f"nemo-beyond-nll: {run_dir}: trainer.max_steps: 300 -> 400 (earlier config kept as config.1.yaml)"]
        assert (run_dir / "config.1.yaml").read_text() == first
        assert "max_steps: 400" in (run_dir / "config.yaml").read_text()
        record = json.loads((run_dir / "config_history.jsonl").read_text())
        assert record["previous"] == "config.1.yaml" and record["changes"]["trainer.max_steps"] == [300, 400]
        # Once a checkpoint exists, what it depends on may not change in this folder.
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "latest").write_text("10\n")
        current = (run_dir / "config.yaml").read_text()
        with pytest.raises(RunRefused, match=r"model.tiny.hidden_size \(128 -> 64\).*another checkpoint.dir"):
            record_config(cfg("trainer.max_steps=400", "optim.lr=0.001", "model.tiny.hidden_size=64"), "eval")
        with pytest.raises(RunRefused, match=r"data.task \('sort' -> 'copy'\)"):
            record_config(cfg("trainer.max_steps=400", "optim.lr=0.001", "data.task=copy"), "train")
        assert (run_dir / "config.yaml").read_text() == current
        record_config(cfg("trainer.max_steps=400", "optim.lr=0.001", "data.task=copy"), "eval")  # eval may
        assert (run_dir / "config.2.yaml").read_text() == current
