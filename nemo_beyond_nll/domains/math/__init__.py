"""The math domain: final answers and their equivalence (:mod:`.answers`), NuminaMath-CoT SFT rows (:mod:`.sft`)."""

from .answers import DEFAULT_TIMEOUT_S, answer_parts, extract_answer, final_answer, is_equiv
from .sft import HUB_ID, INSTRUCTION, build_math, math_example

__all__ = [
    "DEFAULT_TIMEOUT_S", "HUB_ID", "INSTRUCTION", "answer_parts", "build_math", "extract_answer", "final_answer", "is_equiv",
    "math_example",
]
