"""Grade one model output against one row written by :func:`nemo_beyond_nll.data.build`."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from . import figfont, math, medical

DOMAINS = ("math", "medical", "figfont")


def grade(domain: str, output: Optional[str], row: Mapping[str, Any], timeout: float = math.DEFAULT_TIMEOUT_S) -> bool:
    """Whether `output` answers `row` correctly: for math, its last \\boxed{} answer is equivalent
    to row["answer"]; for medical, the option it chooses (from row["options"]) is row["answer"];
    for figfont, it is the word row["answer"]."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose from {', '.join(DOMAINS)}")
    if not isinstance(row, Mapping) or not isinstance(row.get("answer"), str):
        raise ValueError("row must be a mapping with a string 'answer'")
    if domain == "math":
        return math.is_equiv(math.extract_answer(output), row["answer"], timeout=timeout)
    if domain == "medical":
        if not row.get("options"):
            raise ValueError("a medical row needs its 'options' to be graded")
        return medical.extract_choice(output, row["options"]) == row["answer"]
    return figfont.score(output, row["answer"])
