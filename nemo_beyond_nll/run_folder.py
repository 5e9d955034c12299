"""A run folder (a recipe's `checkpoint.dir`): its layout, its lock, the config it ran with and what a
rerun in it may change. The one module that names the folder's files.

Layout (every engine and command writes its part; nothing else spells these names):

    config.yaml              the config of the latest command (earlier ones: config.<n>.yaml)
    config_history.jsonl     every change between a rerun's config and the one before it
    .lock                    held by the one process writing here (see `held`)
    checkpoints/             the engine's checkpoints; the CPU engine's `latest` holds its last step
    metrics.jsonl            training records (CPU engine); training.png draws them
    auto.json                what model.loss=auto chose at the run's start
    probe.json, probe.png    the base model's probe
    eval/                    evaluation records (<benchmark>.jsonl; the CPU engine's samples.jsonl)
    summary.json             the evaluation's summary (what `compare` and `reproduce` read)
    hf/                      Hugging Face exports of the Bridge engine's checkpoints
    tensorboard/, dataset/   the Bridge engine's logs and its links to the recipe's data
    worker_error.json        the CPU engine's worker traceback, written by torchrun

The lock: an exclusive `flock` on `.lock` for the lifetime of the command that writes here. The
kernel drops it when the last process holding the open file ends, however it ends, so a killed run
never leaves a stale lock; the CPU engine passes the open file to torchrun, so the lock lasts while
torchrun stops its workers. After locking, the holder writes its pid, host, command and start time
into the lock file; a second run reads them back for its one-line refusal.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

CONFIG = "config.yaml"
EARLIER_CONFIG = "config.{n}.yaml"
CONFIG_HISTORY = "config_history.jsonl"
LOCK = ".lock"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
METRICS = "metrics.jsonl"
TRAINING_PLOT = "training.png"
AUTO = "auto.json"
PROBE = "probe.json"
PROBE_PLOT = "probe.png"
EVAL = "eval"
SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
HF_EXPORTS = "hf"
TENSORBOARD = "tensorboard"
DATASET = "dataset"
WORKER_ERROR = "worker_error.json"
# Every name above (tests/test_layering.py checks that no other module spells one).
NAMES = (CONFIG, CONFIG_HISTORY, LOCK, CHECKPOINTS, LATEST, METRICS, TRAINING_PLOT, AUTO, PROBE, PROBE_PLOT, EVAL,
         SAMPLES, SUMMARY, HF_EXPORTS, TENSORBOARD, DATASET, WORKER_ERROR)

# Keys a run's checkpoint depends on: a rerun in the same folder must not change them once it has one.
FIXED_FOR_WEIGHTS = ("engine", "model.tensor_parallel", "model.seq_length", "model.tiny", "model.hf_path")
FIXED_FOR_TRAINING = FIXED_FOR_WEIGHTS + ("model.loss", "model.loss_args", "model.pretrained_checkpoint", "data",
                                          "trainer.seed", "trainer.global_batch_size")
TRAINING_MODES = ("train", "continuum")


class RunRefused(Exception):
    """This run may not go on in this folder (one line, for the user)."""


class RunLocked(RunRefused):
    """Another live process holds the run folder's lock."""


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder."""

    root: Path

    @classmethod
    def of(cls, cfg) -> "RunFolder":
        """The run folder of a recipe (its checkpoint.dir)."""
        return cls(Path(cfg.checkpoint.dir))

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    config = property(lambda self: self.root / CONFIG)
    history = property(lambda self: self.root / CONFIG_HISTORY)
    lock = property(lambda self: self.root / LOCK)
    checkpoints = property(lambda self: self.root / CHECKPOINTS)
    latest = property(lambda self: self.root / CHECKPOINTS / LATEST)
    metrics = property(lambda self: self.root / METRICS)
    training_plot = property(lambda self: self.root / TRAINING_PLOT)
    auto = property(lambda self: self.root / AUTO)
    probe = property(lambda self: self.root / PROBE)
    probe_plot = property(lambda self: self.root / PROBE_PLOT)
    eval_dir = property(lambda self: self.root / EVAL)
    samples = property(lambda self: self.root / EVAL / SAMPLES)
    summary = property(lambda self: self.root / SUMMARY)
    hf_exports = property(lambda self: self.root / HF_EXPORTS)
    tensorboard = property(lambda self: self.root / TENSORBOARD)
    dataset = property(lambda self: self.root / DATASET)
    worker_error = property(lambda self: self.root / WORKER_ERROR)

    def earlier_config(self, n: int) -> Path:
        return self.root / EARLIER_CONFIG.format(n=n)

    def latest_step(self) -> Optional[int]:
        """The step the CPU engine's `latest` pointer names, or None (no checkpoint, or unreadable)."""
        try:
            return int(self.latest.read_text().strip())
        except (OSError, ValueError):
            return None

    def has_checkpoint(self) -> bool:
        return self.checkpoints.is_dir() and any(self.checkpoints.iterdir())

    def finished(self) -> bool:
        """Whether the run was evaluated (its summary.json exists)."""
        return self.summary.is_file()


# The lock ----------------------------------------------------------------------------------------

def _holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(holder: dict) -> str:
    if not holder.get("pid"):
        return "another process (it is starting)"
    text = f"pid {holder['pid']} on {holder.get('host', '?')}"
    if holder.get("host") == socket.gethostname() and not _alive(int(holder["pid"])):
        text += " (gone; its workers are still stopping)"
    if holder.get("command"):
        text += f", `{holder['command']}`"
    if holder.get("started"):
        text += f", since {holder['started']}"
    return text


RUN_REFUSAL = ("run folder", "wait for that run to end, or give this one another checkpoint.dir")
BUILD_REFUSAL = ("data folder", "wait for that build to end, or give this one another --out")


def acquire(run_dir, command: Optional[str] = None, refusal: tuple = RUN_REFUSAL) -> int:
    """Lock `run_dir` (created if missing); returns the locked file descriptor (`release` it).

    Raises RunLocked, naming the holder, when another open file of the lock is locked: another
    process, or an earlier `acquire` in this one that was not released. `refusal`: what the folder
    is, and what to do instead, for that one line.
    """
    folder = RunFolder(run_dir)
    folder.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RunLocked(f"{refusal[0]} {folder.root} is in use by {describe_holder(holder)}: {refusal[1]}") from None
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "command": command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
    return fd


def release(fd: int) -> None:
    """Close this process's locked file (the flock goes with the last process holding it open)."""
    os.close(fd)


@contextmanager
def held(run_dir, refusal: tuple = RUN_REFUSAL) -> Iterator[int]:
    """The run folder locked for one command: on global rank 0 of a torchrun group (or outside
    torchrun) yields the locked file descriptor, on the other ranks -1 (they write nothing that
    rank 0 does not coordinate). Each command takes it once, after checking its inputs."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield -1
        return
    fd = acquire(run_dir, shlex.join(["nemo-beyond-nll", *sys.argv[1:]]), refusal)
    try:
        yield fd
    finally:
        release(fd)


@contextmanager
def held_output(out_dir) -> Iterator[int]:
    """`held` for a folder a command fills from its inputs (a `data` build): a second build into it
    fails at once naming the holder. A folder made only for the lock, and left empty by the build,
    goes again with the lock (the lock file is hidden, and no reader takes it for data)."""
    folder = RunFolder(out_dir)
    made = not folder.root.exists()
    with held(folder.root, BUILD_REFUSAL) as fd:
        try:
            yield fd
        finally:
            if made and fd >= 0 and [p.name for p in folder.root.iterdir()] == [LOCK]:
                folder.lock.unlink()
                folder.root.rmdir()


# The config and what a rerun may change ------------------------------------------------------------

def _flat(tree, prefix: str = "") -> dict:
    """{dotted key: leaf} of a nested dict (an empty dict is a leaf)."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_changes(old: dict, new: dict) -> dict:
    """{dotted key: (old, new)} for every leaf that differs between two config trees."""
    a, b = _flat(old), _flat(new)
    return {key: (a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)}


def check_resumable(cfg) -> None:
    """Refuse a rerun whose trainer.max_steps lies behind the run's checkpoint (before any worker starts)."""
    folder = RunFolder.of(cfg)
    done, steps = folder.latest_step(), cfg.trainer.max_steps
    if done is not None and steps is not None and done > steps:
        raise RunRefused(f"{folder.root} holds a checkpoint at step {done}, past trainer.max_steps={steps}: "
                         f"evaluate it with `nemo-beyond-nll eval`, continue with trainer.max_steps>={done}, "
                         f"or start a new run with another checkpoint.dir")


def _refuse_checkpoint_changes(folder: RunFolder, changes: dict, mode: Optional[str]) -> None:
    if not folder.has_checkpoint():
        return
    fixed = FIXED_FOR_TRAINING if mode in TRAINING_MODES else FIXED_FOR_WEIGHTS
    refused = [k for k in changes if any(k == f or k.startswith(f + ".") for f in fixed)]
    if refused:
        raise RunRefused(f"{folder.root} holds a checkpoint trained with other values of "
                         + ", ".join(f"{k} ({changes[k][0]!r} -> {changes[k][1]!r})" for k in refused)
                         + ": give this run another checkpoint.dir (model.pretrained_checkpoint="
                         + f"{folder.root} starts from its weights)")


def _keep_earlier_config(folder: RunFolder, old_text: str, changes: dict, mode: Optional[str]) -> None:
    """The earlier config as config.<n>.yaml, its changes in config_history.jsonl and on stderr."""
    from .utils.files import atomic_write_text

    n = 1
    while folder.earlier_config(n).exists():
        n += 1
    earlier = folder.earlier_config(n)
    atomic_write_text(earlier, old_text)
    record = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "command": mode, "previous": earlier.name,
              "changes": {k: list(v) for k, v in changes.items()}}
    with open(folder.history, "a", encoding="utf-8") as history:
        history.write(json.dumps(record, default=str) + "\n")
    for key, (before, after) in changes.items():
        print(f"nemo-beyond-nll: {folder.root}: {key}: {before!r} -> {after!r} (earlier config kept as {earlier.name})",
              file=sys.stderr)


def record_config(cfg, mode: Optional[str] = None) -> Path:
    """Sweep what killed runs left and write `config.yaml` (the config of this command); call with
    the folder `held`. A rerun that changes the config keeps the earlier one (`config.<n>.yaml`,
    `config_history.jsonl`, one line per changed key on stderr); changes to keys the checkpoint
    depends on are refused (RunRefused) before anything is written. Returns config.yaml's path."""
    from omegaconf import OmegaConf

    from .utils.files import atomic_write_text, remove_stale_temporaries

    folder = RunFolder.of(cfg)
    remove_stale_temporaries(folder.root)
    text = OmegaConf.to_yaml(cfg, resolve=True)
    old_text = folder.config.read_text(encoding="utf-8") if folder.config.exists() else None
    if old_text is not None and old_text != text:
        changes = config_changes(OmegaConf.to_container(OmegaConf.create(old_text)),
                                 OmegaConf.to_container(cfg, resolve=True))
        _refuse_checkpoint_changes(folder, changes, mode)
        _keep_earlier_config(folder, old_text, changes, mode)
    atomic_write_text(folder.config, text)
    return folder.config
