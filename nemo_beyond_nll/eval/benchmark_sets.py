"""The paper's evaluation benchmarks: where each one's rows come from and how they become eval rows.

Each benchmark turns a raw row into an eval row `{"id", "prompt", "answer"}`, plus `"options"`
({letter: text}) for multiple choice. The prompt is built the way that domain's SFT builder builds
it (:mod:`nemo_beyond_nll.domains`), so a model fine-tuned on built rows sees a familiar format: the
question, a blank line and the builder's instruction; multiple-choice options one per line as
"A. text". The `answer` is what :func:`nemo_beyond_nll.domains.grade` compares with.

Rows come from a local file or folder given per benchmark (:func:`benchmark_source`), else from
the hub with `datasets.load_dataset(hub_id, config, split=split)`; figfont puzzles are generated
with reasoning-gym. A row that cannot be used (not an object, a missing or blank field, an answer
that names no option, a repeated id) is skipped and counted by reason, never an error.

| name | domain | hub id (config) | split | fields read |
|---|---|---|---|---|
| math500 | math | HuggingFaceH4/MATH-500 | test | problem, answer, unique_id |
| minerva_math | math | math-ai/minervamath | test | question or problem; answer, else the \\boxed{} of solution |
| olympiadbench | math | Hothan/OlympiadBench (OE_TO_maths_en_COMP) | train | context, question, final_answer (a list), id |
| aime24 | math | HuggingFaceH4/aime_2024 | train | problem, answer, id |
| amc23 | math | math-ai/amc23 | test | question, answer (a number), id |
| medmcqa | medical | openlifescienceai/medmcqa | validation | question, opa-opd, cop (0-3), id |
| medqa | medical | GBaker/MedQA-USMLE-4-options | test | question, options {A-D}, answer_idx |
| pubmedqa | medical | qiaojin/PubMedQA (pqa_labeled) | train | context.contexts, question, final_decision, pubid |
| mmlu_medical | medical | cais/mmlu (6 medical subjects) | test | question, choices, answer (0-3) |
| m1_eval | medical | UCSC-VLAA/m1_eval_data, file m1_eval_data.json | - | question, options {A-..}, answer_idx, source |
| figfont | figfont | generated: reasoning-gym figlet_font | - | question, answer |

Assumptions (the hub cannot be reached where this was written; checked against other projects'
loaders, not against the hub itself):

- The math hub ids are the ones public evaluation scripts commonly load. Qwen2.5-Math's own
  evaluation reads local copies (`evaluation/data/<name>/test.jsonl`, under these same names)
  whose fields are read too (minerva_math's problem/solution, olympiadbench's
  question/final_answer), so a folder laid out like its `evaluation/data` works as `directory`.
- OlympiadBench: the text-only English competition-math subset (OE_TO_maths_en_COMP, 674-675
  problems) is what "OlympiadBench" means in the Qwen2.5-Math tables; the hub puts it in a "train"
  split. Several final answers are joined with ", "; a `context` is put before the question.
- AMC23's answers are numbers (27.0): whole numbers are written without ".0".
- MedMCQA has no public test labels: the validation split (4183 questions) is the usual test set,
  and `cop` is the 0-based index of the hub's copy (the original release's JSON counts from 1:
  convert such a file first, since 1-3 would silently shift by one).
- MedQA: the 4-option USMLE test set (1273 questions). Rows shaped like its "-hf" variant
  (sent1, ending0-3, label) are read too.
- PubMedQA: the 1000 expert-labelled questions (pqa_labeled; lm-eval-harness evaluates all of
  them, some papers the 500 of fold 0's test split: give that as a local file). The abstract's
  paragraphs go before the question and the choices are A. yes, B. no, C. maybe.
- MMLU medical: anatomy, clinical_knowledge, college_biology, college_medicine, medical_genetics
  and professional_medicine (MultiMedQA's choice), in that order, as one benchmark.
- m1_eval: the m1 medical evaluation set, the paper's medical benchmark. The hub keeps it as one
  JSON file, `{source: [rows]}` (MedMCQA, MedQA, PubMedQA, MMLU-Pro and GPQA medical questions,
  MedBullets, MedXpertQA, Lancet, NEJM, Humanity's Last Exam), read with huggingface_hub rather
  than `datasets`; each row's source is kept for accuracy per source (summary.json's `by_source`,
  and `source_average`, the unweighted mean over sources, as the authors average). A local copy
  may be that file or a list of rows that each carry `source` (the authors' processed copy,
  `m1_eval_data_processed.json`, or JSON Lines).
- Figfont: `FIGFONT_SIZE` puzzles drawn with seed `FIGFONT_SEED`. reasoning-gym draws item i
  from seed + i, so this set shares no item with any training set generated with a seed below
  FIGFONT_SEED - size (the builder's default seed is 0).
"""

from __future__ import annotations

import ast
import itertools
import math
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..data.pipeline import SkipRow
from ..data.sources import LOCAL_SUFFIXES
from ..domains.figfont import figfont_example, generate_puzzles
from ..domains.math import INSTRUCTION as MATH_INSTRUCTION
from ..domains.math import extract_answer
from ..domains.medical import INSTRUCTION as MEDICAL_INSTRUCTION
from ..domains.medical import option_map

FIGFONT_SEED = 1_000_000_000
FIGFONT_SIZE = 500
# Why a raw row is not used; counted per benchmark.
REASONS = ("malformed", "bad_answer", "duplicate_id")

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its domain, where the hub keeps it, and raw row -> eval row."""

    name: str
    domain: str
    to_row: Callable[[Any], Dict[str, Any]]  # raises SkipRow(reason) for a row it cannot use
    hub_id: Optional[str] = None  # None: generated (figfont)
    hub_configs: Tuple[Optional[str], ...] = (None,)
    split: str = "test"
    hub_file: Optional[str] = None  # one JSON file of the hub repository, {group: [rows]} or [rows]: not `datasets`


@dataclass
class LoadedBenchmark:
    """A benchmark's usable eval rows and what was skipped on the way."""

    name: str
    domain: str
    source: str
    rows: List[Dict[str, Any]]
    rows_read: int = 0
    skipped: Dict[str, int] = field(default_factory=dict)  # reason -> rows (only reasons that occurred)


# ---------------------------------------------------------------------------------------------
# Field helpers


def _field(row: Any, names: Sequence[str]) -> Any:
    """The value of the first of `names` that `row` has (and is not None), else SkipRow("malformed")."""
    if not isinstance(row, Mapping):
        raise SkipRow("malformed")
    for name in names:
        if row.get(name) is not None:
            return row[name]
    raise SkipRow("malformed")


def _text(row: Any, names: Sequence[str]) -> str:
    value = _field(row, names)
    if not isinstance(value, str) or not value.strip():
        raise SkipRow("malformed")
    return value.strip()


def _row_id(row: Mapping, names: Sequence[str]) -> Optional[str]:
    for name in names:
        value = row.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None  # the loader numbers the row by its position


def _one_line(text: str) -> str:
    """Option texts on one line each, so that the lettered list reads back unchanged."""
    return _WHITESPACE.sub(" ", text).strip()


def _math_prompt(problem: str) -> str:
    """As :func:`nemo_beyond_nll.domains.math.math_example` builds it."""
    return f"{problem}\n\n{MATH_INSTRUCTION}"


def _medical_prompt(question: str, options: Mapping[str, str]) -> str:
    """As the medical builder's rows read: the question, its options "A. text" one per line, the
    builder's instruction."""
    lines = "\n".join(f"{letter}. {text}" for letter, text in options.items())
    return f"{question}\n{lines}\n\n{MEDICAL_INSTRUCTION}"


# ---------------------------------------------------------------------------------------------
# Math


def _number_or_text(value: Any) -> str:
    """An answer as text: whole numbers without ".0", strings stripped of surrounding `$`."""
    if isinstance(value, bool):
        raise SkipRow("bad_answer")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SkipRow("bad_answer")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str) and value.strip().strip("$").strip():
        return value.strip().strip("$").strip()
    raise SkipRow("malformed")


def _answer_list(value: Any) -> str:
    """OlympiadBench's final_answer: a list of answers (or its string form "['$3$']"), joined."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise SkipRow("malformed") from None
    if isinstance(value, (list, tuple)):
        if not value:
            raise SkipRow("malformed")
        return ", ".join(_number_or_text(v) for v in value)
    return _number_or_text(value)


def _math_row(question_fields, answer_fields, *, context_field=None, answer_list=False, id_fields=("id",)):
    def to_row(row: Any) -> Dict[str, Any]:
        problem = _text(row, question_fields)
        context = row.get(context_field) if context_field else None
        if isinstance(context, str) and context.strip():
            problem = f"{context.strip()}\n{problem}"
        try:
            value = _field(row, answer_fields)
        except SkipRow:
            # No answer field: the final \boxed{} of a worked solution (MATH-style rows).
            solution = row.get("solution")
            value = extract_answer(solution) if isinstance(solution, str) else None
            if value is None:
                raise
        answer = _answer_list(value) if answer_list else _number_or_text(value)
        return {"id": _row_id(row, id_fields), "prompt": _math_prompt(problem), "answer": answer}

    return to_row


# ---------------------------------------------------------------------------------------------
# Medical


def _options(value: Any) -> Dict[str, str]:
    try:
        options = option_map(value)
    except ValueError:
        raise SkipRow("malformed") from None
    options = {letter: _one_line(text) for letter, text in options.items()}
    if len(options) < 2 or not all(options.values()) or list(options) != list(string.ascii_uppercase[: len(options)]):
        raise SkipRow("malformed")
    return options


def _gold_letter(value: Any, options: Mapping[str, str]) -> str:
    """A 0-based index or a letter ("c", "(C)") naming one of `options`."""
    if isinstance(value, int) and not isinstance(value, bool):
        letter = string.ascii_uppercase[value] if 0 <= value < len(options) else None
    elif isinstance(value, str):
        letter = value.strip().strip("().").strip().upper()
    else:
        raise SkipRow("malformed")
    if letter not in options:
        raise SkipRow("bad_answer")
    return letter


def _choice_row(question: str, options: Dict[str, str], letter: str, row_id: Optional[str]) -> Dict[str, Any]:
    return {"id": row_id, "prompt": _medical_prompt(question, options), "answer": letter, "options": options}


def medmcqa_row(row: Any) -> Dict[str, Any]:
    question = _text(row, ("question",))
    options = _options([_text(row, (key,)) for key in ("opa", "opb", "opc", "opd")])
    return _choice_row(question, options, _gold_letter(_field(row, ("cop",)), options), _row_id(row, ("id",)))


def medqa_row(row: Any) -> Dict[str, Any]:
    if isinstance(row, Mapping) and "sent1" in row:  # the "-hf" layout
        question = _text(row, ("sent1",))
        options = _options([_text(row, (f"ending{i}",)) for i in range(4)])
        letter = _gold_letter(_field(row, ("label",)), options)
        return _choice_row(question, options, letter, _row_id(row, ("id",)))
    question = _text(row, ("question",))
    options = _options(_field(row, ("options",)))
    if row.get("answer_idx") is not None:
        letter = _gold_letter(row["answer_idx"], options)
    else:  # only the answer's text: the option that reads the same
        answer = _one_line(_text(row, ("answer",))).casefold()
        matches = [k for k, v in options.items() if v.casefold() == answer]
        if len(matches) != 1:
            raise SkipRow("bad_answer")
        letter = matches[0]
    return _choice_row(question, options, letter, _row_id(row, ("id",)))


PUBMEDQA_OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}


def pubmedqa_row(row: Any) -> Dict[str, Any]:
    question = _text(row, ("question", "QUESTION"))
    context = _field(row, ("context", "CONTEXTS"))
    if isinstance(context, Mapping):
        context = context.get("contexts")
    if isinstance(context, (list, tuple)):
        context = "\n".join(c.strip() for c in context if isinstance(c, str) and c.strip())
    if not isinstance(context, str) or not context.strip():
        raise SkipRow("malformed")
    decision = _text(row, ("final_decision",)).lower()
    letters = {text: letter for letter, text in PUBMEDQA_OPTIONS.items()}
    if decision not in letters:
        raise SkipRow("bad_answer")
    options = dict(PUBMEDQA_OPTIONS)
    return _choice_row(f"{context.strip()}\n\n{question}", options, letters[decision], _row_id(row, ("pubid", "id")))


def mmlu_row(row: Any) -> Dict[str, Any]:
    question = _text(row, ("question",))
    options = _options(_field(row, ("choices",)))
    return _choice_row(question, options, _gold_letter(_field(row, ("answer",)), options), _row_id(row, ("id",)))


def m1_row(row: Any) -> Dict[str, Any]:
    """A row of the m1 evaluation set: question, options {letter: text}, answer_idx, and its source."""
    question = _text(row, ("question",))
    options = _options(_field(row, ("options",)))
    letter = _gold_letter(_field(row, ("answer_idx",)), options)
    source = row.get("source")
    eval_row = _choice_row(question, options, letter, _row_id(row, ("id",)))
    eval_row["source"] = source.strip() if isinstance(source, str) and source.strip() else "unknown"
    return eval_row


def grouped_rows(data: Any) -> List[Any]:
    """Rows of a JSON file laid out as {source: [rows]} (each row gains "source", unless it has
    one), [rows] or {"data": [rows]}. Anything else in a group is kept, to be counted as malformed."""
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return list(data["data"])
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"expected {{source: [rows]}} or a list of rows, got {type(data).__name__}")
    rows: List[Any] = []
    for source, group in data.items():
        for row in group if isinstance(group, list) else [None]:
            rows.append(dict(row, source=source) if isinstance(row, Mapping) and "source" not in row else row)
    return rows


def _grouped_file(path: Path) -> List[Any]:
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    return grouped_rows(data)


# ---------------------------------------------------------------------------------------------
# Figfont


def figfont_row(row: Any) -> Dict[str, Any]:
    example = figfont_example(row)  # the builder's own prompt; raises SkipRow("malformed")
    return {"id": _row_id(row, ("id",)), "prompt": example.prompt, "answer": example.fields["answer"]}


# ---------------------------------------------------------------------------------------------
# Registry

MMLU_MEDICAL_SUBJECTS = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)

BENCHMARKS: Dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("math500", "math", _math_row(("problem", "question"), ("answer",), id_fields=("unique_id", "id", "idx")),
                  "HuggingFaceH4/MATH-500"),
        Benchmark("minerva_math", "math", _math_row(("question", "problem"), ("answer",), id_fields=("id", "idx")),
                  "math-ai/minervamath"),
        Benchmark("olympiadbench", "math",
                  _math_row(("question", "problem"), ("final_answer", "answer"), context_field="context", answer_list=True,
                            id_fields=("id", "idx")),
                  "Hothan/OlympiadBench", ("OE_TO_maths_en_COMP",), "train"),
        Benchmark("aime24", "math", _math_row(("problem", "question", "Problem"), ("answer", "Answer"), id_fields=("id", "ID", "idx")),
                  "HuggingFaceH4/aime_2024", split="train"),
        Benchmark("amc23", "math", _math_row(("question", "problem"), ("answer",), id_fields=("id", "idx")), "math-ai/amc23"),
        Benchmark("medmcqa", "medical", medmcqa_row, "openlifescienceai/medmcqa", split="validation"),
        Benchmark("medqa", "medical", medqa_row, "GBaker/MedQA-USMLE-4-options"),
        Benchmark("pubmedqa", "medical", pubmedqa_row, "qiaojin/PubMedQA", ("pqa_labeled",), "train"),
        Benchmark("mmlu_medical", "medical", mmlu_row, "cais/mmlu", MMLU_MEDICAL_SUBJECTS),
        Benchmark("m1_eval", "medical", m1_row, "UCSC-VLAA/m1_eval_data", hub_file="m1_eval_data.json"),
        Benchmark("figfont", "figfont", figfont_row),
    )
}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


# ---------------------------------------------------------------------------------------------
# Loading


def benchmark_source(
    name: str, *, files: Optional[Mapping[str, Union[str, Path]]] = None, directory: Optional[Union[str, Path]] = None
) -> Optional[Path]:
    """The local file or folder of benchmark `name`, or None (then the hub, or generation).

    `files[name]` wins and must exist; else the first of `<directory>/<name>.jsonl`, `.json`,
    `.parquet` or the folder `<directory>/<name>/` that exists.
    """
    get_benchmark(name)
    if files and name in files:
        path = Path(files[name])
        if not path.exists():
            raise ValueError(f"file for benchmark {name!r} not found: {path}")
        return path
    if directory is not None:
        directory = Path(directory)
        if not directory.is_dir():
            raise ValueError(f"benchmark directory not found: {directory}")
        for candidate in [directory / f"{name}{suffix}" for suffix in LOCAL_SUFFIXES] + [directory / name]:
            if candidate.exists():
                return candidate
    return None


def default_source(name: str, num_samples: Optional[int] = None) -> str:
    """Where benchmark `name`'s rows come from without a local copy: "hub id (configs) [split]", or
    the puzzle generator and its seed."""
    bench = get_benchmark(name)
    if bench.hub_id is None:
        size = FIGFONT_SIZE if num_samples is None else num_samples
        return f"reasoning_gym:figlet_font(size={size}, seed={FIGFONT_SEED})"
    if bench.hub_file is not None:
        return f"{bench.hub_id}/{bench.hub_file}"
    configs = [c for c in bench.hub_configs if c]
    return bench.hub_id + (f" ({', '.join(configs)})" if configs else "") + f" [{bench.split}]"


def _raw_rows(bench: Benchmark, source: Optional[Path], num_samples: Optional[int]) -> Tuple[Iterable[Any], str]:
    from ..data.sources import open_rows

    if source is not None:
        if bench.hub_file is not None and source.is_file() and source.suffix.lower() == ".json":
            return _grouped_file(source), str(source)
        rows, _ = open_rows(source, split=bench.split)
        return rows, str(source)
    where = default_source(bench.name, num_samples)
    if bench.hub_file is not None:
        from huggingface_hub import hf_hub_download

        return _grouped_file(Path(hf_hub_download(bench.hub_id, bench.hub_file, repo_type="dataset"))), where
    if bench.hub_id is None:
        return generate_puzzles(FIGFONT_SIZE if num_samples is None else num_samples, FIGFONT_SEED), where
    parts = [open_rows(bench.hub_id, split=bench.split, config=config)[0] for config in bench.hub_configs]
    return itertools.chain.from_iterable(parts), where


def load_benchmark(
    name: str, *, source: Optional[Union[str, Path]] = None, num_samples: Optional[int] = None
) -> LoadedBenchmark:
    """Benchmark `name`'s eval rows from `source` (a local file or folder), else from the hub (or
    generated, for figfont). `num_samples` keeps the first that many usable rows."""
    bench = get_benchmark(name)
    if num_samples is not None and (not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1):
        raise ValueError(f"num_samples must be a positive integer or None, got {num_samples!r}")
    raw, where = _raw_rows(bench, None if source is None else Path(source), num_samples)
    rows: List[Dict[str, Any]] = []
    skipped: Counter = Counter()
    seen = set()
    read = 0
    for position, raw_row in enumerate(raw):
        if num_samples is not None and len(rows) >= num_samples:
            break
        read += 1
        try:
            row = bench.to_row(raw_row)
        except SkipRow as skip:
            skipped[skip.reason] += 1
            continue
        row["id"] = str(position) if row.get("id") is None else row["id"]
        if row["id"] in seen:
            skipped["duplicate_id"] += 1
            continue
        seen.add(row["id"])
        rows.append(row)
    return LoadedBenchmark(name, bench.domain, where, rows, read, dict(skipped))


def load_benchmarks(
    names: Sequence[str],
    *,
    files: Optional[Mapping[str, Union[str, Path]]] = None,
    directory: Optional[Union[str, Path]] = None,
    num_samples: Optional[int] = None,
) -> List[LoadedBenchmark]:
    """Load several benchmarks, each from its local source when there is one (see benchmark_source)."""
    if isinstance(names, str) or not names:
        raise ValueError("benchmarks must be a non-empty list of benchmark names")
    for name in list(names) + list(files or {}):
        get_benchmark(name)  # an unknown name, also among `files`, is an error before any loading
    if len(set(names)) != len(names):
        raise ValueError(f"benchmarks must not repeat a name, got {list(names)}")
    loaded = []
    for name in names:
        bench = load_benchmark(name, source=benchmark_source(name, files=files, directory=directory),
                               num_samples=num_samples)
        if not bench.rows:
            raise ValueError(f"benchmark {name!r} has no usable rows in {bench.source} "
                             f"({bench.rows_read} read, skipped: {bench.skipped or 'none'})")
        loaded.append(bench)
    return loaded
