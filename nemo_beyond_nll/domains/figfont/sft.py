"""Figfont SFT rows: words drawn in FIGlet fonts, generated offline by reasoning-gym.

reasoning-gym's `figlet_font` task renders a random word in a random FIGlet font; the prompt is
its question (the drawing) and an instruction to answer with the word only; the completion, and
the stored `answer`, is the word. Rows can also come from a file or hub dataset with `question`
and `answer` fields.

reasoning-gym draws item i of a set from seed + i, so sets generated with seeds less than `size`
apart share items: give a held-out test set a seed far from the training set's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Union

from tqdm import tqdm

from ...data.pipeline import Example, text_field, write_sft_splits
from ...data.sources import open_rows

TASK = "figlet_font"
INSTRUCTION = "Answer with the word only."
DEFAULT_SIZE = 1000


def generate_puzzles(size: int, seed: int, task_options: Optional[Mapping[str, Any]] = None, progress: bool = False) -> Iterator[dict]:
    """`size` puzzles {"question", "answer", "font"} from reasoning-gym's figlet_font task.

    `task_options` go to the task's config (min_word_len, max_word_len, space_letters, ...).
    """
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    import reasoning_gym

    try:
        puzzles = reasoning_gym.create_dataset(TASK, size=size, seed=seed, **dict(task_options or {}))
    except (TypeError, AssertionError) as err:  # unknown option, or the task's own config check
        raise ValueError(f"bad figlet_font task options {dict(task_options or {})}: {err}") from None

    def puzzle_rows():  # the checks above run at the call, the rendering as rows are consumed
        for index in tqdm(range(size), desc="figfont puzzles", unit="puzzle", disable=not progress):
            item = puzzles[index]
            yield {"question": item["question"], "answer": item["answer"], "font": item["metadata"]["font"]}

    return puzzle_rows()


def figfont_example(
    row: Any, *, question_field: str = "question", answer_field: str = "answer", instruction: str = INSTRUCTION
) -> Example:
    # Only trailing space goes: leading spaces are part of the drawing.
    question = text_field(row, question_field).rstrip()
    answer = text_field(row, answer_field).strip()
    prompt = f"{question}\n\n{instruction}" if instruction else question
    fields = {"answer": answer}
    if isinstance(row.get("font"), str):
        fields["font"] = row["font"]
    return Example(prompt, answer, fields)


def build_figfont(
    source: Optional[Union[str, Path]],
    out_dir: Union[str, Path],
    *,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    task_options: Optional[Mapping[str, Any]] = None,
    question_field: str = "question",
    answer_field: str = "answer",
    instruction: str = INSTRUCTION,
    split: str = "train",
    config: Optional[str] = None,
    limit: Optional[int] = None,
    **write_options,
) -> Dict[str, Any]:
    """Write figfont SFT files; see write_sft_splits.

    With no `source`, `size` puzzles are generated with `seed` (and `task_options`); otherwise rows
    are read from `source` and `size`, `seed` and `task_options` are not used.
    """
    if source is None:
        rows, total = generate_puzzles(size, seed, task_options), size
        source_name = f"reasoning_gym:{TASK}(size={size}, seed={seed}, options={dict(task_options or {})})"
    else:
        rows, total = open_rows(source, split=split, config=config, limit=limit)
        source_name = str(source)

    def to_example(row):
        return figfont_example(row, question_field=question_field, answer_field=answer_field, instruction=instruction)

    return write_sft_splits(rows, to_example, out_dir, domain="figfont", source=source_name, total=total, **write_options)
