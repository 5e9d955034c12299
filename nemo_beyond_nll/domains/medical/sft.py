"""Medical multiple-choice SFT rows from m23k (`UCSC-VLAA/m23k-tokenized`).

Field names are configurable (`fields`); the defaults are the names m23k's rows carry (a copy
that names them differently needs `fields`):

- `prompt`: the question, with its lettered options one per line ("A. ...");
- `reasoning`: the reasoning trace;
- `distilled_answer_string`: the written final answer;
- `answer_letter`: the gold option letter.

The completion is the reasoning and the written answer. The options are read from an `options`
field when a row has one (a list, or a mapping of letters to texts), else from the question's
lettered lines. When the completion states no choice (see
:func:`nemo_beyond_nll.domains.medical.answers.stated_choice`), a last line "The answer is X." is added, so
that every completion ends in the form the prompt asks for and the grader reads first; rows whose
completion states another option than the gold letter are dropped.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from ...data.pipeline import Example, SkipRow, text_field, write_sft_splits
from ...data.sources import open_rows
from .answers import option_map, parse_options, stated_choice

HUB_ID = "UCSC-VLAA/m23k-tokenized"
M23K_FIELDS = {
    "prompt": "prompt",
    "reasoning": "reasoning",
    "answer": "distilled_answer_string",
    "letter": "answer_letter",
    "options": "options",
}
INSTRUCTION = 'Please reason step by step, then finish with "The answer is X.", where X is the letter of the correct option.'
REASONS = ("bad_answer_letter", "answer_disagrees_with_letter")


def _gold_letter(raw: str) -> str:
    letter = raw.strip().strip("().").strip().upper()
    if len(letter) != 1 or letter not in string.ascii_uppercase:
        raise SkipRow("bad_answer_letter")
    return letter


def _options(row: Mapping, question: str, field: Optional[str]) -> Dict[str, str]:
    given = row.get(field) if field else None
    if given is None:
        return parse_options(question)
    try:
        return option_map(given)
    except ValueError:
        raise SkipRow("malformed") from None


def medical_example(row: Any, *, fields: Mapping[str, Optional[str]] = M23K_FIELDS, instruction: str = INSTRUCTION) -> Example:
    fields = {**M23K_FIELDS, **fields}
    question = text_field(row, fields["prompt"]).strip()
    letter = _gold_letter(text_field(row, fields["letter"]))
    parts = [text_field(row, fields[key]).strip() for key in ("reasoning", "answer") if fields[key]]
    if not parts:
        raise ValueError("fields must name a reasoning field, an answer field, or both")
    completion = "\n\n".join(parts)
    options = _options(row, question, fields["options"])
    notes = ()
    if not options:
        notes = ("options_not_found",)
    elif letter not in options:
        raise SkipRow("bad_answer_letter")
    else:
        chosen = stated_choice(completion, options)
        if chosen is None:
            completion, notes = f"{completion}\n\nThe answer is {letter}.", ("answer_line_added",)
        elif chosen != letter:
            raise SkipRow("answer_disagrees_with_letter")
    prompt = f"{question}\n\n{instruction}" if instruction else question
    return Example(prompt, completion, {"answer": letter, "options": options or None}, notes)


def build_medical(
    source: Optional[Union[str, Path]],
    out_dir: Union[str, Path],
    *,
    fields: Optional[Mapping[str, Optional[str]]] = None,
    instruction: str = INSTRUCTION,
    split: str = "train",
    config: Optional[str] = None,
    limit: Optional[int] = None,
    **write_options,
) -> Dict[str, Any]:
    """Write medical SFT files from `source` (default: the m23k hub id); see write_sft_splits.

    `fields` overrides some of M23K_FIELDS, e.g. {"letter": "answer_idx"}; a field set to None
    (reasoning, answer or options) is not used.
    """
    source = HUB_ID if source is None else source
    fields = {**M23K_FIELDS, **(fields or {})}
    unknown = set(fields) - set(M23K_FIELDS)
    if unknown:
        raise ValueError(f"unknown medical fields {sorted(unknown)}; known: {sorted(M23K_FIELDS)}")
    if not (fields["reasoning"] or fields["answer"]):
        raise ValueError("fields must name a reasoning field, an answer field, or both")
    rows, total = open_rows(source, split=split, config=config, limit=limit)

    def to_example(row):
        return medical_example(row, fields=fields, instruction=instruction)

    return write_sft_splits(
        rows, to_example, out_dir, domain="medical", source=str(source), reasons=REASONS, total=total, **write_options
    )
