"""The three domains (math, medical, figfont), each defined once: its instruction, how its SFT rows
are built from a source, and how a model's answer is read and graded.

:func:`build` writes one domain's SFT files: `build("math", "AI-MO/NuminaMath-CoT", "data/math")`,
`build("medical", "m23k.parquet", "data/medical", max_length=4096, tokenizer=tok)`,
`build("figfont", None, "data/figfont", size=20000, seed=0)`; see :mod:`nemo_beyond_nll.data.pipeline`
for the files written and the report, and each domain's `sft` module for its fields and defaults.
:func:`grade` and :func:`read_answer` grade one output against one row those builders (or the
benchmarks of :mod:`nemo_beyond_nll.eval.benchmark_sets`) wrote.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

from ..data.pipeline import write_sft_splits
from .figfont import build_figfont, normalize, score
from .math import DEFAULT_TIMEOUT_S, answer_parts, build_math, final_answer, is_equiv
from .medical import build_medical, extract_choice

BUILDERS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "math": build_math,
    "medical": build_medical,
    "figfont": build_figfont,
}
DOMAINS = tuple(BUILDERS)


def _option_names(func: Callable) -> set:
    return {p.name for p in inspect.signature(func).parameters.values() if p.kind is p.KEYWORD_ONLY}


def build(domain: str, source: Optional[Union[str, Path]], out_dir: Union[str, Path], **options) -> Dict[str, Any]:
    """Build one domain's SFT files from `source` into `out_dir`; returns the report.

    `source` is a hub id, a local file or folder, or None for the domain's default (the hub id of
    NuminaMath-CoT or m23k; generated puzzles for figfont). `options` are the domain builder's
    and write_sft_splits' keyword arguments (validation_fraction, split_seed, tokenizer,
    max_length, chat_template, dedup, progress, ...).
    """
    if domain not in BUILDERS:
        raise ValueError(f"unknown domain {domain!r}; choose from {', '.join(DOMAINS)}")
    builder = BUILDERS[domain]
    known = _option_names(builder) | _option_names(write_sft_splits)
    known -= {"domain", "source", "reasons", "total"}  # set by the builder itself
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {domain} option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return builder(source, out_dir, **options)


def read_answer(
    domain: str, output: Optional[str], row: Mapping[str, Any], timeout: float = DEFAULT_TIMEOUT_S
) -> Tuple[Optional[str], bool]:
    """What the grader reads from `output` (the final answer: its last \\boxed{} or, without a box,
    its final answer statement or formula line; the chosen option letter; the normalised word), and
    whether it answers `row` correctly."""
    if domain == "math":
        answer = final_answer(output, parts=answer_parts(row["answer"]))
        return answer, is_equiv(answer, row["answer"], timeout=timeout)
    if domain == "medical":
        answer = extract_choice(output, row["options"])
        return answer, answer == row["answer"]
    if domain == "figfont":
        return normalize(output), score(output, row["answer"])
    raise ValueError(f"unknown domain {domain!r}; choose from {', '.join(DOMAINS)}")


def grade(domain: str, output: Optional[str], row: Mapping[str, Any], timeout: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether `output` answers `row` correctly: for math, its final answer (see
    :func:`nemo_beyond_nll.domains.math.answers.final_answer`) is equivalent to row["answer"]; for
    medical, the option it chooses (from row["options"]) is row["answer"]; for figfont, it is the
    word row["answer"]."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose from {', '.join(DOMAINS)}")
    if not isinstance(row, Mapping) or not isinstance(row.get("answer"), str):
        raise ValueError("row must be a mapping with a string 'answer'")
    if domain == "medical" and not row.get("options"):
        raise ValueError("a medical row needs its 'options' to be graded")
    return read_answer(domain, output, row, timeout)[1]


__all__ = ["BUILDERS", "DOMAINS", "build", "grade", "read_answer"]
