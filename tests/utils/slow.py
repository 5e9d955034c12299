"""Functions for the time-limit tests; the child process imports them by name."""

import signal
import time


def echo(value):
    return value


def fail(message):
    raise KeyError(message)


def sleep(seconds):
    time.sleep(seconds)
    return "finished"


def sleep_deaf_to_alarm(seconds):
    """Sleeps with SIGALRM blocked, as a long call in C code would: only a kill ends it early."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)
    return "finished"


def slow_warm_up():
    """A cold start longer than the limits the tests set; logs each run (one line per process)."""
    import os

    time.sleep(1.5)
    with open(os.environ["WARM_UP_LOG"], "a") as f:
        f.write(f"{os.getpid()}\n")
