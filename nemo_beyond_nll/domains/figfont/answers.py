"""Figfont puzzles: the decoded word must match exactly, up to case and spacing."""

from __future__ import annotations

from typing import Optional


def normalize(text: str) -> str:
    """Lower case, no leading or trailing whitespace, single spaces inside."""
    return " ".join(text.split()).casefold()


def score(pred: Optional[str], gold: str) -> bool:
    """Whether the prediction is the gold word after whitespace and case normalisation.

    Nothing else is forgiven: "B A D" is not "BAD", and "BAD." is not "BAD".
    """
    if not isinstance(gold, str) or not gold.strip():
        raise ValueError(f"gold answer must be a non-empty string, got {gold!r}")
    if pred is None:
        return False
    if not isinstance(pred, str):
        raise ValueError(f"prediction must be a string, got {type(pred).__name__}")
    return normalize(pred) == normalize(gold)
