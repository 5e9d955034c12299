"""Synthetic prompt/completion tasks the project makes itself: no download, any size, seeded.

Each task maps a random input string to a deterministic answer, short enough that a tiny GPT
learns it on a CPU in minutes. They share one alphabet, so a model pre-trained on some of them
"knows" the format and letters of the others (used to place tasks on the capability continuum).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Dict, List

LETTERS = "abcdefghij"


def _word(rng: random.Random, low: int = 3, high: int = 6) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(low, high)))


def _number(rng: random.Random) -> int:
    return rng.randint(0, 99)


def _rot(text: str, k: int) -> str:
    return "".join(LETTERS[(LETTERS.index(c) + k) % len(LETTERS)] for c in text)


@dataclass(frozen=True)
class Task:
    name: str
    make: Callable[[random.Random], Dict[str, str]]
    description: str


def _reverse(rng):
    w = _word(rng)
    return {"prompt": f"reverse {w}=", "completion": w[::-1]}


def _sort(rng):
    w = _word(rng)
    return {"prompt": f"sort {w}=", "completion": "".join(sorted(w))}


def _copy(rng):
    w = _word(rng)
    return {"prompt": f"copy {w}=", "completion": w}


def _shift(rng):
    w = _word(rng)
    return {"prompt": f"shift {w}=", "completion": _rot(w, 1)}


def _add(rng):
    a, b = _number(rng), _number(rng)
    return {"prompt": f"add {a} {b}=", "completion": str(a + b)}


def _swap(rng):
    """First and last letters exchanged: related to copy/reverse, new as a rule."""
    w = _word(rng)
    return {"prompt": f"swap {w}=", "completion": w[-1] + w[1:-1] + w[0]}


TASKS: Dict[str, Task] = {
    t.name: t
    for t in (
        Task("reverse", _reverse, "the word backwards"),
        Task("sort", _sort, "the word's letters in alphabetical order"),
        Task("copy", _copy, "the word itself"),
        Task("shift", _shift, "every letter moved one place on in a..j"),
        Task("add", _add, "the sum of two numbers below 100"),
        Task("swap", _swap, "the word with its first and last letters exchanged"),
    )
}


def task_names(task: str) -> List[str]:
    """`a+b+c` is a mixture of tasks a, b and c, drawn in turn."""
    names = task.split("+")
    for name in names:
        if name not in TASKS:
            raise ValueError(f"unknown synthetic task {name!r}; valid tasks: {', '.join(TASKS)}")
    return names


def make_examples(task: str, n: int, seed: int) -> List[Dict[str, str]]:
    """`n` examples of `task` (or of a `a+b` mixture), the same for the same seed."""
    names = task_names(task)
    rngs = [random.Random(f"{name}:{seed}") for name in names]
    return [TASKS[names[i % len(names)]].make(rngs[i % len(names)]) for i in range(n)]


def add_label_noise(examples: List[Dict[str, str]], fraction: float, seed: int) -> List[Dict[str, str]]:
    """Replace the completion of about `fraction` of the examples with random letters of the same length."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"label noise fraction must lie in [0, 1], got {fraction}")
    rng = random.Random(f"noise:{seed}")
    noisy = []
    for ex in examples:
        if rng.random() < fraction:
            ex = {**ex, "completion": "".join(rng.choice(LETTERS) for _ in ex["completion"])}
        noisy.append(ex)
    return noisy


def make_split(task: str, num_train: int, num_validation: int, seed: int, noise: float = 0.0):
    """(train, validation) with no validation prompt seen in training; `noise` corrupts training labels only."""
    pool = make_examples(task, 4 * (num_train + num_validation), seed)
    seen, validation, train = set(), [], []
    for ex in pool:
        if ex["prompt"] in seen:
            continue
        seen.add(ex["prompt"])
        (validation if len(validation) < num_validation else train).append(ex)
        if len(train) >= num_train:
            break
    if len(validation) < num_validation:
        raise ValueError(f"task {task!r} has too few distinct examples for {num_validation} held out")
    return add_label_noise(train, noise, seed), validation
