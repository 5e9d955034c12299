"""How many optimizer steps a training set makes: one formula for every engine."""

from __future__ import annotations

import math


def optimizer_steps(rows: int, epochs: float, global_batch_size: int) -> int:
    """`epochs` passes over `rows` examples in global batches, the last one partial; at least one step."""
    return max(1, math.ceil(epochs * rows / global_batch_size))
