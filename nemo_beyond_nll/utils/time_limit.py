"""Run a function under a wall-clock limit, from any thread.

Grading one math answer can run for minutes (sympy expanding 10^(10^10)), so every comparison
gets a limit. A SIGALRM timer interrupts pure-Python work at no cost, but signals reach only the
main thread, and the timer is shared with anyone else who set one. Everywhere else the call goes to
a child process (one per calling thread), which applies the same timer in its own main thread and
is killed when even that does not bring it back.

Functions are named "module:qualname" so the child can import them; arguments and results travel
as JSON. A `warm_up` function (a first import of a parser, a grammar loaded on first use) runs once
per process before the clock starts, so that a cold start on a busy machine is not counted as the
call's own time.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

STARTUP_TIMEOUT_S = 180.0  # a fresh interpreter importing torch and sympy on a busy machine
REPLY_GRACE_S = 1.0  # the child's own timer fires first; this covers the round trip


class TimeLimitExceeded(BaseException):
    """Raised inside the limited call by the timer.

    A BaseException, so that libraries that catch Exception around their work cannot swallow it.
    """


def resolve(name: str) -> Callable:
    """The function named "module:qualname"."""
    module, _, qualname = name.partition(":")
    if not module or not qualname:
        raise ValueError(f"function name must look like 'module:qualname', got {name!r}")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{name!r} is not callable")
    return obj


def call_with_time_limit(name: str, args: Sequence[Any], seconds: float, fallback: Any,
                         warm_up: Optional[str] = None) -> Any:
    """`resolve(name)(*args)`, or `fallback` if it has not returned after `seconds`.

    `warm_up` names a function of no arguments that runs once per process (this one, or the child
    that serves the call) before the clock starts.
    """
    if not (isinstance(seconds, (int, float)) and seconds > 0):
        raise ValueError(f"time limit must be a positive number of seconds, got {seconds!r}")
    func = resolve(name)  # import before the clock starts: a first import can take seconds
    if _alarm_available():
        warm(warm_up)
        return _call_with_alarm(func, args, seconds, fallback)
    return _thread_worker().call(name, args, seconds, fallback, warm_up)


_warmed = set()
_warm_lock = threading.Lock()


def warm(warm_up: Optional[str]) -> None:
    """Run the function named `warm_up` if this process has not run it yet."""
    if warm_up is None or warm_up in _warmed:
        return
    with _warm_lock:
        if warm_up not in _warmed:
            resolve(warm_up)()
            _warmed.add(warm_up)


def _alarm_available() -> bool:
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0  # someone else's timer is running
    )


def _raise_time_limit(signum, frame):
    raise TimeLimitExceeded()


def _call_with_alarm(func: Callable, args: Sequence[Any], seconds: float, fallback: Any) -> Any:
    previous = signal.signal(signal.SIGALRM, _raise_time_limit)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return func(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except TimeLimitExceeded:  # also when it fires during the `finally` above
        return fallback
    finally:
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)


class _ChildWorker:
    """A child interpreter that serves calls, one at a time, for one thread of this process."""

    def __init__(self):
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )
        self._replies: "queue.Queue[Optional[dict]]" = queue.Queue()
        threading.Thread(target=_pump, args=(self._proc.stdout, self._replies), daemon=True).start()
        self._ready = False
        self._warmed = set()
        weakref.finalize(self, _stop, self._proc)

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def call(self, name: str, args: Sequence[Any], seconds: float, fallback: Any, warm_up: Optional[str] = None) -> Any:
        if not self._ready:
            try:
                hello = self._replies.get(timeout=STARTUP_TIMEOUT_S)
            except queue.Empty:
                hello = None
            if not (hello and hello.get("ready")):
                self.kill()
                raise RuntimeError(f"the time-limit worker did not start within {STARTUP_TIMEOUT_S:.0f} s")
            self._ready = True
        try:
            request = {"name": name, "args": list(args), "seconds": seconds, "warm_up": warm_up}
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            if warm_up is not None and warm_up not in self._warmed:
                # the child warms up before its clock starts and says so; that wait is not the call's
                ack = self._replies.get(timeout=STARTUP_TIMEOUT_S)
                if not (ack and ack.get("warm")):
                    self.kill()
                    raise RuntimeError(f"{warm_up} failed in the time-limit worker: {(ack or {}).get('error')}")
                self._warmed.add(warm_up)
            reply = self._replies.get(timeout=seconds + REPLY_GRACE_S)
        except (queue.Empty, BrokenPipeError):
            reply = None
        if reply is None:  # overran even its own timer, or died: replace it
            self.kill()
            return fallback
        if "error" in reply:
            raise RuntimeError(f"{name} failed in the time-limit worker: {reply['error']}")
        return fallback if reply.get("timed_out") else reply["result"]

    def kill(self):
        self._proc.kill()
        _stop(self._proc)


def _pump(stream, replies: "queue.Queue[Optional[dict]]"):
    with stream:  # closed here, at end of file, so that no other thread closes it under a read
        for line in stream:
            replies.put(json.loads(line))
    replies.put(None)  # end of file: the child is gone


def _stop(proc: subprocess.Popen):
    try:
        proc.stdin.close()  # the child leaves its loop at end of input
    except OSError:  # its end of the pipe is gone already
        pass
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_workers = threading.local()


def _thread_worker() -> _ChildWorker:
    worker = getattr(_workers, "worker", None)
    if worker is None or not worker.alive:
        worker = _workers.worker = _ChildWorker()
    return worker


_TIMED_OUT = object()


def serve():
    """The child's loop: one JSON request per input line, one JSON reply per output line."""
    # Replies get a private copy of stdout; anything the called code prints goes to stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    replies.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        warm_up = request.get("warm_up")
        if warm_up is not None and warm_up not in _warmed:
            try:
                warm(warm_up)
                replies.write(json.dumps({"warm": True}) + "\n")
            except Exception as err:
                replies.write(json.dumps({"warm": False, "error": f"{type(err).__name__}: {err}"}) + "\n")
                continue
        try:
            func = resolve(request["name"])
            if hasattr(signal, "setitimer"):
                result = _call_with_alarm(func, request["args"], request["seconds"], _TIMED_OUT)
            else:  # no timer on this platform: the parent's kill is the only limit
                result = func(*request["args"])
            reply = {"timed_out": True} if result is _TIMED_OUT else {"result": result}
        except Exception as err:
            reply = {"error": f"{type(err).__name__}: {err}"}
        try:
            text = json.dumps(reply)
        except TypeError as err:  # a result that JSON cannot carry
            text = json.dumps({"error": f"TypeError: {err}"})
        replies.write(text + "\n")


if __name__ == "__main__":
    serve()
