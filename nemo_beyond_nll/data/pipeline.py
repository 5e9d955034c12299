"""From raw rows to SFT files: convert, deduplicate, template, filter by length, split, write, report.

Every domain gives a function from one raw row to an :class:`Example` (or raises :class:`SkipRow`
with a reason); :func:`write_sft_splits` does the rest, the same way for every domain. It writes
into `out_dir`:

- `all.jsonl`, `train.jsonl`, `validation.jsonl`: one JSON object per line, `{"prompt": ...,
  "completion": ..., <domain fields such as "answer">}`; the loss is taken on the completion;
- `report.json` (also returned as a dict): rows read, kept (train, validation), dropped per
  reason with the source positions (0-based) of the first few dropped rows of each reason, notes
  per kind, and the options used.

The validation split holds exactly round(validation_fraction x kept rows) rows, at most all but one
(the training split keeps at least one): those whose seeded hash of the untemplated prompt and
completion is smallest. So the split does not depend on the order of the source or on the chat
template, and one row more or less moves at most one other row. A source that leaves no row to
train on is an error that gives the report's counts, and no split file is written.

A build in progress is marked by `.incomplete` in `out_dir`, removed only after every file is in
place (split files are written to `.partial` files and renamed; `report.json` comes last), so a
build killed halfway leaves a folder that :func:`check_complete` refuses rather than half-written
splits that read as whole.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

from tqdm import tqdm

SPLITS = ("train", "validation")
FILES = {"train": "train.jsonl", "validation": "validation.jsonl", "all": "all.jsonl"}
REPORT_FILE = "report.json"
INCOMPLETE_MARKER = ".incomplete"  # present while a build writes the folder, and after a build that died
# Why rows are dropped by every builder; domains add their own (e.g. "no_boxed_answer").
COMMON_REASONS = ("malformed", "duplicate", "too_long")
EXAMPLES_PER_REASON = 5  # row indices kept in the report for each reason, to look at

ChatTemplate = Callable[[str], str]


@dataclass(frozen=True)
class Example:
    """One SFT row before templating: the user's text, the target completion, extra fields to store,
    and notes (things worth counting that do not drop the row)."""

    prompt: str
    completion: str
    fields: Dict[str, Any] = field(default_factory=dict)
    notes: Tuple[str, ...] = ()


class SkipRow(Exception):
    """Raised by a domain's converter to drop a row; `reason` is counted in the report."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SplitFileError(ValueError):
    """A split file an engine cannot train or evaluate on; the message is one line naming the file,
    the line and what is wrong."""


def check_split_file(path: Union[str, Path], encode: Optional[Callable[[str], Any]] = None) -> int:
    """The number of rows of a prompt/completion JSON Lines split, after checking every line the way
    the engines read it: a JSON object with non-empty string fields `prompt` and `completion`, each
    of which `encode` (the engine's tokenizer, if given) accepts. Blank lines are skipped. Raises :class:`SplitFileError` for a missing or empty file or the first
    bad line (1-based)."""
    path = Path(path)
    if not path.is_file():
        raise SplitFileError(f"{path}: {'is a folder, not a' if path.is_dir() else 'no such'} file")
    rows = 0
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(raw)
            except UnicodeDecodeError:
                raise SplitFileError(f"{where}: not UTF-8 text") from None
            except json.JSONDecodeError as err:
                raise SplitFileError(f"{where}: not valid JSON ({err.msg}, column {err.colno})") from None
            if not isinstance(row, dict):
                raise SplitFileError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
            for name in ("prompt", "completion"):
                if name not in row:
                    raise SplitFileError(f"{where}: no {name!r} field (a row needs 'prompt' and 'completion')")
                if not isinstance(row[name], str) or not row[name]:
                    raise SplitFileError(f"{where}: {name!r} must be a non-empty string, got {row[name]!r:.40}")
                if encode is not None:
                    try:
                        encode(row[name])
                    except ValueError as err:
                        raise SplitFileError(f"{where}: {name!r}: {str(err).splitlines()[0]}") from None
            rows += 1
    if not rows:
        raise SplitFileError(f"{path}: empty file (no prompt/completion rows)")
    return rows


def text_field(row: Any, name: str) -> str:
    """row[name] as a non-blank string, or SkipRow("malformed")."""
    if not isinstance(row, Mapping):
        raise SkipRow("malformed")
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        raise SkipRow("malformed")
    return value


def count_tokens(tokenizer: Callable[[str], Any], text: str) -> int:
    """Tokens in `text` by a tokenizer-like callable returning a count, a sequence of ids, or a
    mapping with "input_ids" (what a Hugging Face tokenizer's __call__ returns)."""
    out = tokenizer(text)
    if isinstance(out, Mapping) and "input_ids" in out:
        out = out["input_ids"]
    if isinstance(out, int) and not isinstance(out, bool):
        return out
    if isinstance(out, (str, bytes)) or not hasattr(out, "__len__"):
        raise ValueError(f"tokenizer must return a count, a sequence of ids or {{'input_ids': ...}}, got {type(out).__name__}")
    return len(out)


def hf_chat_template(tokenizer: Any, system: Optional[str] = None) -> ChatTemplate:
    """A chat template from a Hugging Face tokenizer: the user's text as one user turn (after an
    optional system turn), ending where the assistant's answer starts."""

    def template(text: str) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return template


def split_key(prompt: str, completion: str, split_seed: int = 0) -> float:
    """A row's place in [0, 1) by a seeded hash: the smallest go to validation."""
    digest = hashlib.sha256(f"{split_seed}\0{prompt}\0{completion}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def validation_count(validation_fraction: float, kept: int) -> int:
    """Rows of the validation split: round(fraction x kept), halves up, leaving at least one to train on."""
    return max(0, min(math.floor(validation_fraction * kept + 0.5), kept - 1))


def _no_rows_message(source: str, read: int, dropped: Counter) -> str:
    why = ", ".join(f"{reason} {count}" for reason, count in dropped.items() if count) or "none dropped"
    return f"no rows to train on from {source}: read {read}, kept 0, skipped {sum(dropped.values())} ({why})"


def _check_options(validation_fraction, tokenizer, max_length, chat_template):
    if not (isinstance(validation_fraction, (int, float)) and 0 <= validation_fraction < 1):
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    if (tokenizer is None) != (max_length is None):
        raise ValueError("length filtering needs both tokenizer and max_length")
    if max_length is not None and (not isinstance(max_length, int) or max_length <= 0):
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    if tokenizer is not None and not callable(tokenizer):
        raise ValueError("tokenizer must be callable (text -> token count, ids or {'input_ids': ids})")
    if chat_template is not None and not callable(chat_template):
        raise ValueError("chat_template must be callable (user text -> prompt text)")


class IncompleteData(ValueError):
    """A data folder whose build did not finish."""


def check_complete(path: Union[str, Path]) -> None:
    """Raise IncompleteData if `path` (a split file or its folder) comes from a build that did not finish."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if (folder / INCOMPLETE_MARKER).exists():
        raise IncompleteData(f"{folder} holds an unfinished `nemo-beyond-nll data` build (killed, or still "
                             f"running): build it again before training on it")


@dataclass
class _Tally:
    """What a build counts: rows read, rows dropped per reason (with the source positions of the
    first few of each), and the examples' notes."""

    dropped: Counter
    read: int = 0
    dropped_rows: Dict[str, list] = field(default_factory=dict)
    notes: Counter = field(default_factory=Counter)

    def drop(self, reason: str, index: int) -> None:
        self.dropped[reason] += 1
        picked = self.dropped_rows.setdefault(reason, [])
        if len(picked) < EXAMPLES_PER_REASON:
            picked.append(index)


@dataclass
class _RowFilter:
    """One raw row to its templated line of all.jsonl, or None when the row is dropped (counted in
    the tally): converted, deduplicated, templated, length-checked."""

    to_example: Callable[[Any], Example]
    tally: _Tally
    dedup: bool = True
    chat_template: Optional[ChatTemplate] = None
    tokenizer: Optional[Callable[[str], Any]] = None
    max_length: Optional[int] = None
    seen: set = field(default_factory=set)

    def example(self, row: Any, index: int) -> Optional[Example]:
        try:
            example = self.to_example(row)
        except SkipRow as skip:
            self.tally.drop(skip.reason, index)
            return None
        if self.dedup:
            key = hashlib.sha256(f"{example.prompt}\0{example.completion}".encode("utf-8")).digest()[:16]
            if key in self.seen:
                self.tally.drop("duplicate", index)
                return None
            self.seen.add(key)
        return example

    def prompt(self, example: Example) -> str:
        prompt = example.prompt if self.chat_template is None else self.chat_template(example.prompt)
        if not isinstance(prompt, str):
            raise ValueError(f"chat_template must return a string, got {type(prompt).__name__}")
        return prompt

    def line(self, row: Any, index: int) -> Optional[Tuple[Example, str]]:
        """(the example, its JSON line) for a kept row."""
        example = self.example(row, index)
        if example is None:
            return None
        prompt = self.prompt(example)
        if self.tokenizer is not None and count_tokens(self.tokenizer, prompt + example.completion) > self.max_length:
            self.tally.drop("too_long", index)
            return None
        self.tally.notes.update(example.notes)
        return example, json.dumps({"prompt": prompt, "completion": example.completion, **example.fields},
                                   ensure_ascii=False)


def _start_build(out_dir: Path) -> bool:
    """Mark `out_dir` as a build in progress; whether the folder was made for it."""
    made_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INCOMPLETE_MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
    (out_dir / REPORT_FILE).unlink(missing_ok=True)
    return made_dir


def _write_all(rows: Iterable[Any], keep: _RowFilter, path: Path, split_seed: int, progress_bar) -> list:
    """Write every kept row's line to `path`; the split_key of each, in order."""
    keys = []
    with path.open("w", encoding="utf-8") as out:
        for index, row in enumerate(progress_bar(rows)):
            keep.tally.read += 1
            kept = keep.line(row, index)
            if kept is None:
                continue
            example, line = kept
            keys.append(split_key(example.prompt, example.completion, split_seed))
            out.write(line + "\n")
    return keys


def _abandon_build(out_dir: Path, made_dir: bool, partial_all: Path) -> None:
    """Nothing to train on: remove what the build wrote, as if it had not run."""
    partial_all.unlink()
    (out_dir / INCOMPLETE_MARKER).unlink()
    if made_dir and not any(out_dir.iterdir()):
        out_dir.rmdir()


def _validation_rows(keys: Sequence[float], validation_fraction: float) -> set:
    """Positions in all.jsonl of the validation split: the rows with the smallest keys."""
    count = validation_count(validation_fraction, len(keys))
    return set(sorted(range(len(keys)), key=lambda i: (keys[i], i))[:count])


def _write_splits(partial: Mapping[str, Path], validation: set) -> Counter:
    """Deal all.jsonl's lines into the train and validation files; the rows of each."""
    sizes = Counter({split: 0 for split in SPLITS})
    with partial["all"].open(encoding="utf-8") as lines, partial["train"].open("w", encoding="utf-8") as train, \
            partial["validation"].open("w", encoding="utf-8") as held_out:
        for index, line in enumerate(lines):
            split = "validation" if index in validation else "train"
            (held_out if split == "validation" else train).write(line)
            sizes[split] += 1
    return sizes


def _report(domain: str, source: str, tally: _Tally, sizes: Counter, options: dict) -> Dict[str, Any]:
    return {
        "domain": domain,
        "source": source,
        "rows_read": tally.read,
        "kept": sizes["train"] + sizes["validation"],
        "train": sizes["train"],
        "validation": sizes["validation"],
        "dropped": dict(tally.dropped),
        "dropped_row_indices": tally.dropped_rows,
        "notes": dict(tally.notes),
        "options": options,
    }


def _finish_build(out_dir: Path, partial: Mapping[str, Path], final: Mapping[str, Path], report: dict) -> None:
    """Put the complete files in place, the report last, then unmark the build."""
    for name, path in partial.items():
        os.replace(path, final[name])
    report_tmp = out_dir / (REPORT_FILE + ".partial")
    report_tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(report_tmp, out_dir / REPORT_FILE)
    (out_dir / INCOMPLETE_MARKER).unlink()  # the build is complete only now


def write_sft_splits(
    rows: Iterable[Any],
    to_example: Callable[[Any], Example],
    out_dir: Union[str, Path],
    *,
    domain: str,
    source: str,
    reasons: Sequence[str] = (),
    validation_fraction: float = 0.05,
    split_seed: int = 0,
    tokenizer: Optional[Callable[[str], Any]] = None,
    max_length: Optional[int] = None,
    chat_template: Optional[ChatTemplate] = None,
    dedup: bool = True,
    total: Optional[int] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """Convert `rows` with `to_example` and write the split files and report into `out_dir`.

    `tokenizer` and `max_length` drop rows whose templated prompt + completion has more than
    `max_length` tokens. `chat_template` turns the user's text into the prompt the model sees.
    `dedup` drops rows whose prompt and completion repeat an earlier row's. `reasons` are the
    domain's own drop reasons, listed in the report even when zero.
    """
    _check_options(validation_fraction, tokenizer, max_length, chat_template)
    out_dir = Path(out_dir)
    final = {name: out_dir / filename for name, filename in FILES.items()}
    partial = {name: path.with_name(path.name + ".partial") for name, path in final.items()}
    tally = _Tally(Counter({reason: 0 for reason in (*COMMON_REASONS, *reasons)}))
    keep = _RowFilter(to_example, tally, dedup, chat_template, tokenizer, max_length)

    made_dir = _start_build(out_dir)
    keys = _write_all(rows, keep, partial["all"], split_seed,
                      lambda it: tqdm(it, total=total, desc=f"{domain} rows", unit="row", disable=not progress))
    if not keys:
        _abandon_build(out_dir, made_dir, partial["all"])
        raise ValueError(_no_rows_message(source, tally.read, tally.dropped))
    sizes = _write_splits(partial, _validation_rows(keys, validation_fraction))
    options = {"validation_fraction": validation_fraction, "split_seed": split_seed, "max_length": max_length,
               "chat_template": chat_template is not None, "dedup": dedup}
    report = _report(domain, source, tally, sizes, options)
    _finish_build(out_dir, partial, final, report)
    return report
