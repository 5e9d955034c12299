"""Math SFT rows from NuminaMath-CoT (`AI-MO/NuminaMath-CoT`: fields `problem`, `solution`).

The prompt is the problem and an instruction to box the final answer; the completion is the
solution. Only solutions with a final \\boxed{} answer are kept, and that answer is stored as
`answer` for grading with :func:`nemo_beyond_nll.domains.math.answers.is_equiv`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

from ...data.pipeline import Example, SkipRow, text_field, write_sft_splits
from ...data.sources import open_rows
from .answers import extract_answer

HUB_ID = "AI-MO/NuminaMath-CoT"
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
REASONS = ("no_boxed_answer",)


def math_example(
    row: Any, *, problem_field: str = "problem", solution_field: str = "solution", instruction: str = INSTRUCTION
) -> Example:
    problem = text_field(row, problem_field).strip()
    solution = text_field(row, solution_field).strip()
    answer = extract_answer(solution)
    if answer is None:
        raise SkipRow("no_boxed_answer")
    prompt = f"{problem}\n\n{instruction}" if instruction else problem
    return Example(prompt, solution, {"answer": answer})


def build_math(
    source: Optional[Union[str, Path]],
    out_dir: Union[str, Path],
    *,
    problem_field: str = "problem",
    solution_field: str = "solution",
    instruction: str = INSTRUCTION,
    split: str = "train",
    config: Optional[str] = None,
    limit: Optional[int] = None,
    **write_options,
) -> Dict[str, Any]:
    """Write math SFT files from `source` (default: the NuminaMath-CoT hub id); see write_sft_splits."""
    source = HUB_ID if source is None else source
    rows, total = open_rows(source, split=split, config=config, limit=limit)

    def to_example(row):
        return math_example(row, problem_field=problem_field, solution_field=solution_field, instruction=instruction)

    return write_sft_splits(
        rows, to_example, out_dir, domain="math", source=str(source), reasons=REASONS, total=total, **write_options
    )
