import os
import signal
import threading
import time

import pytest

from nemo_beyond_nll.utils.time_limit import call_with_time_limit, resolve

SLOW = "tests.utils.slow"


def in_thread(func, *args):
    """func(*args) in a fresh thread; returns (result, seconds)."""
    out = {}

    def run():
        start = time.perf_counter()
        try:
            out["result"] = func(*args)
        except Exception as err:
            out["error"] = err
        out["seconds"] = time.perf_counter() - start

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive(), "the call never returned"
    if "error" in out:
        raise out["error"]
    return out["result"], out["seconds"]


def test_result_in_main_thread_and_handler_restored():
    def handler(signum, frame):
        pass

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        assert call_with_time_limit(f"{SLOW}:echo", ("x",), 5, "fallback") == "x"
        assert signal.getsignal(signal.SIGALRM) is handler
        assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_overrun_in_main_thread_returns_fallback():
    # The sleep returns "finished" if it runs out: the fallback shows the limit cut it short.
    assert call_with_time_limit(f"{SLOW}:sleep", (30,), 0.3, "fallback") == "fallback"


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_warm_up_runs_once_per_process_outside_the_clock(where, tmp_path, monkeypatch):
    log = tmp_path / "warm_up.log"
    monkeypatch.setenv("WARM_UP_LOG", str(log))
    monkeypatch.setattr("nemo_beyond_nll.utils.time_limit._warmed", set())

    def two_calls():
        # the warm-up sleeps 1.5 s, longer than the 0.5 s limit: counted in the call, it would time out
        return [call_with_time_limit(f"{SLOW}:echo", (n,), 0.5, "fallback", warm_up=f"{SLOW}:slow_warm_up")
                for n in (1, 2)]

    results = two_calls() if where == "main thread" else in_thread(two_calls)[0]
    assert results == [1, 2]
    pids = log.read_text().split()
    assert len(pids) == 1 and (pids[0] == str(os.getpid())) == (where == "main thread")  # else the child's


def test_other_thread_uses_child_process():
    assert in_thread(call_with_time_limit, f"{SLOW}:echo", ([1, "a"],), 5, None)[0] == [1, "a"]
    result, _ = in_thread(call_with_time_limit, f"{SLOW}:sleep", (30,), 0.3, "fallback")
    # The sleep returns "finished" if it runs out: the fallback shows the limit cut it short. No bound
    # on the seconds: a child's start-up on a loaded machine has taken 10 s.
    assert result == "fallback"


def test_child_that_ignores_its_timer_is_killed_and_replaced():
    def two_calls():
        first = call_with_time_limit(f"{SLOW}:sleep_deaf_to_alarm", (60,), 0.3, "fallback")
        return first, call_with_time_limit(f"{SLOW}:echo", ("again",), 5, None)

    (first, second), seconds = in_thread(two_calls)
    assert first == "fallback" and second == "again"
    assert seconds < 50  # not the 60 s sleep, even counting two child start-ups


def test_running_timer_of_someone_else_is_left_alone():
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    signal.setitimer(signal.ITIMER_REAL, 100)
    try:
        assert call_with_time_limit(f"{SLOW}:sleep", (30,), 0.3, "fallback") == "fallback"
        assert 90 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100
        assert signal.getsignal(signal.SIGALRM) is not signal.SIG_DFL and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_errors_reach_the_caller():
    with pytest.raises(KeyError, match="boom"):
        call_with_time_limit(f"{SLOW}:fail", ("boom",), 5, None)
    with pytest.raises(RuntimeError, match="KeyError: 'boom'"):
        in_thread(call_with_time_limit, f"{SLOW}:fail", ("boom",), 5, None)


@pytest.mark.parametrize("name", ["tests.utils.slow", "tests.utils.slow:", ":echo"])
def test_bad_names(name):
    with pytest.raises(ValueError, match="module:qualname"):
        resolve(name)


@pytest.mark.parametrize("seconds", [0, -1, "5", None])
def test_bad_limits(seconds):
    with pytest.raises(ValueError, match="positive number of seconds"):
        call_with_time_limit(f"{SLOW}:echo", (1,), seconds, None)
