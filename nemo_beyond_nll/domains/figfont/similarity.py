"""Figfont's graded metrics beside the pass/fail grade: exact match, case-insensitive match and
Jaro-Winkler similarity of the decoded word, as the paper reports them."""

from __future__ import annotations

from typing import Dict, Optional


def jaro(a: str, b: str) -> float:
    """Jaro similarity: matching characters within half the longer length, less half the transpositions."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    window = max(0, max(len(a), len(b)) // 2 - 1)
    taken = [False] * len(b)
    a_matched = []
    for i, char in enumerate(a):
        for j in range(max(0, i - window), min(len(b), i + window + 1)):
            if not taken[j] and b[j] == char:
                taken[j] = True
                a_matched.append(char)
                break
    matches = len(a_matched)
    if not matches:
        return 0.0
    b_matched = [char for char, used in zip(b, taken) if used]
    transpositions = sum(x != y for x, y in zip(a_matched, b_matched)) / 2
    return (matches / len(a) + matches / len(b) + (matches - transpositions) / matches) / 3


def jaro_winkler(a: str, b: str, *, prefix_weight: float = 0.1, max_prefix: int = 4) -> float:
    """Jaro-Winkler similarity in [0, 1]: Jaro raised by `prefix_weight` per character of common
    prefix (at most `max_prefix`). Case-sensitive; normalise the strings first if case should not count."""
    if not isinstance(a, str) or not isinstance(b, str):
        raise ValueError(f"jaro_winkler compares strings, got {type(a).__name__} and {type(b).__name__}")
    if not 0 <= prefix_weight * max_prefix <= 1:
        raise ValueError(f"prefix_weight * max_prefix must lie in [0, 1], got {prefix_weight} * {max_prefix}")
    similarity = jaro(a, b)
    prefix = 0
    for x, y in zip(a[:max_prefix], b[:max_prefix]):
        if x != y:
            break
        prefix += 1
    return similarity + prefix * prefix_weight * (1 - similarity)


FIGFONT_METRICS = ("exact_match", "case_insensitive", "jaro_winkler")


def figfont_metrics(output: Optional[str], gold: str) -> Dict[str, float]:
    """{"exact_match", "case_insensitive", "jaro_winkler"} of one output against the gold word.

    Surrounding whitespace is ignored throughout (a reply cut at a few tokens often carries a
    leading space or a newline); inside the word nothing is forgiven. The match is case-sensitive,
    then case-insensitive; the similarity is taken on lower-cased text, as the authors' script does.
    No output (None) scores 0 on all three.
    """
    if not isinstance(gold, str) or not gold.strip():
        raise ValueError(f"gold answer must be a non-empty string, got {gold!r}")
    if output is None:
        return {name: 0.0 for name in FIGFONT_METRICS}
    pred, gold = output.strip(), gold.strip()
    return {
        "exact_match": float(pred == gold),
        "case_insensitive": float(pred.casefold() == gold.casefold()),
        "jaro_winkler": jaro_winkler(pred.lower(), gold.lower()),
    }
