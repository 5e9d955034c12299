"""Child processes that do not outlive their parent (Linux `prctl(PR_SET_PDEATHSIG)`), and finding
the live processes of a run by their command lines (Linux `/proc`).

A process that arms the parent-death signal receives it when its parent dies, even when the parent
was killed with SIGKILL and had no chance to stop it. Elsewhere than Linux these are no-ops.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def arm_parent_death_signal(sig: int = signal.SIGTERM, parent: int | None = None) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies.

    `parent` is the pid the parent had before arming (default: the current parent). If the parent
    is already gone (this process was re-parented before arming took effect), exit at once: the
    signal would never come. Returns whether the signal is armed.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid() if parent is None else parent
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent or parent == 1:
        os._exit(128 + int(sig))
    return True


def live_processes_naming(text: str) -> list:
    """Pids of the live (not zombie) processes, other than this one, whose command line contains
    `text`: a run's command, torchrun and its workers all name the run's folder. Linux only."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (entry / "status").read_text()
        except OSError:  # the process ended while being read
            continue
        if text in cmdline and "zombie" not in status:
            found.append(int(entry.name))
    return found
