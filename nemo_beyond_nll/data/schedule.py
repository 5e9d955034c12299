"""How many optimizer steps a training set makes: one formula for every engine."""

from __future__ import annotations

import math


def optimizer_steps(rows: int, epochs: float, global_batch_size: int, drop_last: bool = False) -> int:
    """`epochs` passes over `rows` examples in global batches; at least one step.

    The last batch is partial (ceil) unless `drop_last`, which leaves it out (floor), as a data
    loader with drop_last=True does.
    """
    batches = epochs * rows / global_batch_size
    return max(1, math.floor(batches) if drop_last else math.ceil(batches))
