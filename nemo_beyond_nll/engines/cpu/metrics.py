"""Metrics of a run as JSONL (one record per event) and the target-probability histogram."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import torch

from ...probe import HIST_BINS
from ...probe import probability_histogram as histogram_of
from ...utils.files import read_jsonl, write_jsonl

def probability_histogram(prob: torch.Tensor, mask: torch.Tensor, bins: int = HIST_BINS) -> List[int]:
    """Counts of target probabilities of the masked-in tokens in `bins` equal bins over [0, 1]."""
    return histogram_of(prob[mask.bool()], bins)


class MetricsLog:
    """Append-only JSONL of {"event": ..., "step": ...} records, rewound to a step on resume."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def rewind(self, step: int) -> None:
        """Drop the records of work the checkpoint at `step` does not hold: those after `step`, and
        without a checkpoint (step 0) the initial histogram too, which the fresh start measures again.
        A last line cut by a kill mid-append is dropped with them."""
        kept = []
        for record in read_jsonl(self.path, torn_tail=True):
            fresh_start_measures_again = step == 0 and record["event"] == "prob_hist"
            if record["step"] <= step and not fresh_start_measures_again:
                kept.append(record)
        write_jsonl(self.path, kept)

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def records(self, event: str) -> list:
        return [r for r in read_jsonl(self.path) if r["event"] == event]
