"""Generate answers to benchmarks with any backend, grade them, and write the run's summary.

:func:`evaluate_benchmarks` writes into `out_dir`:

- `eval/<benchmark>.jsonl`: one line per problem, `{"id", "prompt", "output", "answer", "gold",
  "correct"}`, where `answer` is what the grader read from the output (the final \\boxed{}
  content, the chosen option letter, the normalised word) and `gold` the reference answer, as in
  the CPU engine's `eval/samples.jsonl`;
- `summary.json`: `{"objective", "accuracy": {benchmark: fraction}, "num_samples": {benchmark:
  problems}, "average", "skipped_rows": {benchmark: {reason: rows}}, "sources": {benchmark:
  where its rows came from}}` (and `"loss"` when given), the format
  :func:`nemo_beyond_nll.eval.compare.compare_runs` reads.

Generation is resumable: answers are appended to `eval/<benchmark>.jsonl.partial` after every
batch, and the file is renamed to `eval/<benchmark>.jsonl` when the benchmark is done. A rerun
keeps the answers already written, in either file, as long as they are for the same problems in
the same order (same ids and prompts), and generates only the rest; a finished benchmark costs
nothing. A finished file with more problems than asked for now (an earlier run with a larger
`num_samples`) is kept whole; the summary counts the problems asked for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from tqdm import tqdm

from ..domains import read_answer
from .benchmark_sets import LoadedBenchmark, load_benchmark

grade_output = read_answer  # (extracted answer, correct) of one output
Generate = Callable[[List[str]], List[str]]
SUMMARY_FILE = "summary.json"
EVAL_DIR = "eval"
DEFAULT_BATCH_SIZE = 256  # large batches keep vLLM's scheduler full; one batch is the unit of resumption


def _read_records(path: Path) -> List[dict]:
    """The JSON lines of `path` up to the first broken one (a crash can cut the last line short)."""
    records = []
    if not path.is_file():
        return records
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            if not isinstance(record, dict):
                break
            records.append(record)
    return records


def _reusable(records: List[dict], rows: List[dict]) -> List[dict]:
    """The leading records that answer `rows` in order: same id and prompt."""
    kept = []
    for record, row in zip(records, rows):
        if record.get("id") != row["id"] or record.get("prompt") != row["prompt"] or "correct" not in record:
            break
        kept.append(record)
    return kept


def _write_lines(path: Path, records: List[dict], mode: str) -> None:
    with path.open(mode, encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())


def _generate_checked(generate: Generate, prompts: List[str]) -> List[str]:
    outputs = generate(prompts)
    if isinstance(outputs, (str, bytes)) or not isinstance(outputs, Sequence) or len(outputs) != len(prompts):
        got = len(outputs) if isinstance(outputs, Sequence) and not isinstance(outputs, (str, bytes)) else type(outputs).__name__
        raise ValueError(f"generate must return one string per prompt: {len(prompts)} prompts, got {got}")
    for output in outputs:
        if not isinstance(output, str):
            raise ValueError(f"generate must return strings, got {type(output).__name__}")
    return list(outputs)


def run_benchmark(
    bench: LoadedBenchmark, generate: Generate, out_dir: Union[str, Path], *, batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> List[dict]:
    """Answer, grade and record every row of `bench` (resuming earlier records); returns the records."""
    eval_dir = Path(out_dir) / EVAL_DIR
    eval_dir.mkdir(parents=True, exist_ok=True)
    final = eval_dir / f"{bench.name}.jsonl"
    partial = eval_dir / f"{bench.name}.jsonl.partial"
    done = _reusable(_read_records(final), bench.rows)
    if len(done) == len(bench.rows):  # finished before (a file with more problems is kept whole)
        return done
    partial_done = _reusable(_read_records(partial), bench.rows)
    done = partial_done if len(partial_done) > len(done) else done
    _write_lines(partial, done, "w")  # drop whatever does not continue these rows
    bar = tqdm(total=len(bench.rows), initial=len(done), desc=bench.name, unit="problem", disable=not progress,
               dynamic_ncols=True)
    try:
        for start in range(len(done), len(bench.rows), batch_size):
            batch = bench.rows[start:start + batch_size]
            outputs = _generate_checked(generate, [row["prompt"] for row in batch])
            records = []
            for row, output in zip(batch, outputs):
                answer, correct = grade_output(bench.domain, output, row)
                records.append({"id": row["id"], "prompt": row["prompt"], "output": output, "answer": answer,
                                "gold": row["answer"], "correct": bool(correct)})
            _write_lines(partial, records, "a")
            done += records
            bar.update(len(batch))
            bar.set_postfix(accuracy=f"{sum(r['correct'] for r in done) / len(done):.1%}")
    finally:
        bar.close()
    os.replace(partial, final)
    return done


def _check_batch_size(batch_size: Any) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def evaluate_benchmarks(
    benchmarks: Sequence[Union[str, LoadedBenchmark]],
    generate: Generate,
    out_dir: Union[str, Path],
    *,
    num_samples: Optional[int] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    objective: str = "unknown",
    loss: Optional[str] = None,
) -> Dict[str, Any]:
    """Answer every benchmark with `generate(prompts) -> outputs`, grade, write the records and
    `out_dir/summary.json`, and return the summary.

    `benchmarks` are loaded benchmarks (:func:`~nemo_beyond_nll.eval.benchmark_sets.load_benchmarks`)
    or names, loaded from the hub (or generated). `num_samples` keeps each benchmark's first that
    many problems. `objective` (and `loss`, the objective's name) label the run in the summary.
    """
    if isinstance(benchmarks, (str, LoadedBenchmark)) or not benchmarks:
        raise ValueError("benchmarks must be a non-empty list of benchmark names or loaded benchmarks")
    if not callable(generate):
        raise ValueError("generate must be callable: list of prompts -> list of outputs")
    _check_batch_size(batch_size)
    if not isinstance(objective, str) or not objective.strip():
        raise ValueError(f"objective must be a non-empty string, got {objective!r}")
    if num_samples is not None and (not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1):
        raise ValueError(f"num_samples must be a positive integer or None, got {num_samples!r}")
    loaded = [b if isinstance(b, LoadedBenchmark) else load_benchmark(b, num_samples=num_samples) for b in benchmarks]
    names = [b.name for b in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"benchmarks must not repeat a name, got {names}")
    if num_samples is not None:
        loaded = [LoadedBenchmark(b.name, b.domain, b.source, b.rows[:num_samples], b.rows_read, b.skipped) for b in loaded]
    for bench in loaded:
        if not bench.rows:
            raise ValueError(f"benchmark {bench.name!r} has no rows to evaluate")

    accuracy, counts = {}, {}
    for bench in loaded:
        records = run_benchmark(bench, generate, out_dir, batch_size=batch_size, progress=progress)
        counts[bench.name] = len(records)
        accuracy[bench.name] = sum(r["correct"] for r in records) / len(records)
    summary: Dict[str, Any] = {"objective": objective.strip()}
    if loss is not None:
        summary["loss"] = loss
    summary.update({
        "accuracy": accuracy,
        "num_samples": counts,
        "average": sum(accuracy.values()) / len(accuracy),
        "skipped_rows": {b.name: dict(b.skipped) for b in loaded},
        "sources": {b.name: b.source for b in loaded},
    })
    _write_summary(Path(out_dir) / SUMMARY_FILE, summary)
    return summary


def _write_summary(path: Path, summary: Dict[str, Any]) -> None:
    # Written whole and renamed: `compare` may read it while another evaluation runs.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
