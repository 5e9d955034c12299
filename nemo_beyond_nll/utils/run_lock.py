"""One writer per run folder: an exclusive `flock` on RUN_DIR/.lock for the run's lifetime.

The process that starts a run takes the lock before it writes anything into the folder and keeps
the file open until it exits; the kernel drops the lock when the last process holding that open
file ends, however it ends, so a killed run never leaves a stale lock behind. The CLI passes the
open file to torchrun, so the lock also lasts while torchrun stops its workers after the CLI died.

After locking, the holder writes its pid, host, command and start time into the lock file; a second
run reads them back for its one-line refusal.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Dict, Optional

LOCK_NAME = ".lock"

_held: Dict[str, int] = {}  # resolved run folder -> open, locked file descriptor (kept until exit)


class RunLocked(Exception):
    """Another live process holds the run folder's lock."""


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


def acquire(run_dir, command: Optional[str] = None) -> int:
    """Lock `run_dir` (created if missing) for this process; returns the locked file descriptor.

    Raises RunLocked, naming the holder, when another process holds it. Idempotent in one process.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    if key in _held:
        return _held[key]
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RunLocked(f"run folder {run_dir} is in use by {describe_holder(holder)}: wait for that run to end, "
                        f"or give this one another checkpoint.dir") from None
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "command": command if command is not None else shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
    _held[key] = fd
    return fd


def acquire_on_rank_zero(run_dir, command: Optional[str] = None) -> int:
    """:func:`acquire` on global rank 0 of a torchrun group (or outside torchrun); -1 on the other ranks."""
    if int(os.environ.get("RANK", "0")) != 0:
        return -1
    return acquire(run_dir, command)


def release(run_dir) -> None:
    """Drop this process's lock on `run_dir` (exiting does the same)."""
    fd = _held.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)  # closing the last descriptor of the open file releases the flock
