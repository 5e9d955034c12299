"""Generate answers to benchmarks with any backend, grade them, and write the run's summary.

:func:`evaluate_benchmarks` writes into `out_dir`:

- `eval/<benchmark>.jsonl`: one line per problem, `{"id", "prompt", "output", "answer", "gold",
  "correct"}`, where `answer` is what the grader read from the output (the final \\boxed{}
  content, the chosen option letter, the normalised word) and `gold` the reference answer, as in
  the CPU engine's `eval/samples.jsonl`. With k > 1 generations per problem the line also holds
  `"outputs"`, `"answers"` and `"corrects"`, k each, and `output`, `answer`, `correct` are the
  first generation's. A row that names its source (m1_eval) adds `"source"`;
- `summary.json`, the format :func:`nemo_beyond_nll.eval.compare.compare_runs` reads:

      {"objective", "loss" (when given),
       "accuracy": {benchmark: first-sample accuracy},
       "first_sample_accuracy": {benchmark: the same},
       "num_generations": {benchmark: k},
       "mean_at_k": {benchmark: fraction right over all k generations},
       "pass_at_k": {benchmark: {"1": pass@1, "<k>": pass@k}},
       "num_samples": {benchmark: problems}, "average": mean of "accuracy",
       "skipped_rows": {benchmark: {reason: rows}}, "sources": {benchmark: where its rows came from},
       "sampling": {benchmark: {"num_generations", "temperature", "top_p", "max_new_tokens"}} (when given),
       "figfont_metrics": {figfont benchmark: {"exact_match", "case_insensitive", "jaro_winkler"}},
       "by_source": {benchmark: {source: {"accuracy", "mean_at_k", "num_samples"}}},
       "source_average": {benchmark: mean of its sources' accuracies}}

  `accuracy` is the first generation's accuracy, so a greedy single-sample summary reads as it
  always has; see :mod:`.metrics` for mean@k and pass@k. `figfont_metrics` are taken on the first
  generation; `by_source` and `source_average` (the unweighted mean over sources, as the m1
  evaluation set is reported) appear for benchmarks whose rows name a source.

Generation is resumable: answers are appended to `eval/<benchmark>.jsonl.partial` after every
batch, and the file is renamed to `eval/<benchmark>.jsonl` when the benchmark is done. A rerun
keeps the answers already written, in either file, as long as they are for the same problems in
the same order (same ids and prompts), and generates only the rest; a finished benchmark costs
nothing. A finished file with more problems than asked for now (an earlier run with a larger
`num_samples`) is kept whole; the summary counts the problems asked for. A record is reused only
when it holds as many generations as asked for now.

`generate(prompts)` returns one entry per prompt: a string (one generation) or a list of k strings.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from tqdm import tqdm

from ..domains import read_answer
from ..run_folder import RunFolder
from .benchmark_sets import LoadedBenchmark, load_benchmark
from .metrics import benchmark_metrics, figfont_summary, source_summary
from .sampling import Sampling

grade_output = read_answer  # (extracted answer, correct) of one output
# prompts -> per prompt, one output or a list of k outputs
Generate = Callable[[List[str]], List[Union[str, List[str]]]]
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


def _generations(record: dict) -> int:
    corrects = record.get("corrects")
    return len(corrects) if isinstance(corrects, list) else 1


def _reusable(records: List[dict], rows: List[dict], k: int = 1) -> List[dict]:
    """The leading records that answer `rows` in order: same id and prompt, k generations."""
    kept = []
    for record, row in zip(records, rows):
        if (record.get("id") != row["id"] or record.get("prompt") != row["prompt"] or "correct" not in record
                or _generations(record) != k):
            break
        kept.append(record)
    return kept


def _write_lines(path: Path, records: List[dict], mode: str) -> None:
    with path.open(mode, encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())


def _generate_checked(generate: Generate, prompts: List[str], k: int = 1) -> List[List[str]]:
    """k outputs per prompt: `generate` gives a string or a list of k strings per prompt."""
    outputs = generate(prompts)
    if isinstance(outputs, (str, bytes)) or not isinstance(outputs, Sequence) or len(outputs) != len(prompts):
        got = len(outputs) if isinstance(outputs, Sequence) and not isinstance(outputs, (str, bytes)) else type(outputs).__name__
        raise ValueError(f"generate must return one string per prompt: {len(prompts)} prompts, got {got}")
    checked = []
    for output in outputs:
        samples = [output] if isinstance(output, str) else output
        if not isinstance(samples, (list, tuple)):
            raise ValueError(f"generate must return strings, got {type(output).__name__}")
        if len(samples) != k:
            raise ValueError(f"generate must return {k} output(s) per prompt, got {len(samples)}")
        for sample in samples:
            if not isinstance(sample, str):
                raise ValueError(f"generate must return strings, got {type(sample).__name__}")
        checked.append(list(samples))
    return checked


def _record(domain: str, row: dict, outputs: List[str]) -> dict:
    graded = [grade_output(domain, output, row) for output in outputs]
    record = {"id": row["id"], "prompt": row["prompt"], "output": outputs[0], "answer": graded[0][0],
              "gold": row["answer"], "correct": bool(graded[0][1])}
    if len(outputs) > 1:
        record.update({"outputs": outputs, "answers": [a for a, _ in graded], "corrects": [bool(c) for _, c in graded]})
    if isinstance(row.get("source"), str):
        record["source"] = row["source"]
    return record


def run_benchmark(
    bench: LoadedBenchmark, generate: Generate, out_dir: Union[str, Path], *, batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True, num_generations: int = 1,
) -> List[dict]:
    """Answer (`num_generations` outputs per problem), grade and record every row of `bench`
    (resuming earlier records); returns the records."""
    k = num_generations
    eval_dir = RunFolder(out_dir).eval_dir
    eval_dir.mkdir(parents=True, exist_ok=True)
    final = eval_dir / f"{bench.name}.jsonl"
    partial = eval_dir / f"{bench.name}.jsonl.partial"
    done = _reusable(_read_records(final), bench.rows, k)
    if len(done) == len(bench.rows):  # finished before (a file with more problems is kept whole)
        return done
    partial_done = _reusable(_read_records(partial), bench.rows, k)
    done = partial_done if len(partial_done) > len(done) else done
    _write_lines(partial, done, "w")  # drop whatever does not continue these rows
    bar = tqdm(total=len(bench.rows), initial=len(done), desc=bench.name, unit="problem", disable=not progress,
               dynamic_ncols=True)
    try:
        for start in range(len(done), len(bench.rows), batch_size):
            batch = bench.rows[start:start + batch_size]
            outputs = _generate_checked(generate, [row["prompt"] for row in batch], k)
            records = [_record(bench.domain, row, samples) for row, samples in zip(batch, outputs)]
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


def _per_benchmark(value, names: List[str], what: str, check) -> Dict[str, Any]:
    """`value` for every benchmark: one value for all, or a mapping with one per benchmark."""
    if isinstance(value, Mapping):
        missing = [n for n in names if n not in value]
        stray = sorted(set(value) - set(names))
        if missing or stray:
            raise ValueError(f"{what} must name every benchmark evaluated and no other: "
                             f"missing {missing or 'none'}, unknown {stray or 'none'}")
        values = {n: value[n] for n in names}
    else:
        values = {n: value for n in names}
    for name, item in values.items():
        check(name, item)
    return values


def _check_generate(name: str, generate: Any) -> None:
    if not callable(generate):
        raise ValueError("generate must be callable: list of prompts -> list of outputs")


def _check_generations(name: str, k: Any) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"num_generations must be a positive integer, got {k!r} for {name}")


def _check_sampling(name: str, sampling: Any) -> None:
    if not isinstance(sampling, Sampling):
        raise ValueError(f"sampling must be a Sampling per benchmark, got {type(sampling).__name__} for {name}")


def _check_arguments(benchmarks, generate, batch_size, objective, num_samples) -> List[str]:
    """The arguments every benchmark shares, checked; returns the benchmarks' names."""
    if isinstance(benchmarks, (str, LoadedBenchmark)) or not benchmarks:
        raise ValueError("benchmarks must be a non-empty list of benchmark names or loaded benchmarks")
    if not callable(generate) and not isinstance(generate, Mapping):
        raise ValueError("generate must be callable: list of prompts -> list of outputs")
    _check_batch_size(batch_size)
    if not isinstance(objective, str) or not objective.strip():
        raise ValueError(f"objective must be a non-empty string, got {objective!r}")
    if num_samples is not None and (not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1):
        raise ValueError(f"num_samples must be a positive integer or None, got {num_samples!r}")
    names = [b.name if isinstance(b, LoadedBenchmark) else b for b in benchmarks]
    if len(set(names)) != len(names):
        raise ValueError(f"benchmarks must not repeat a name, got {names}")
    return names


def _loaded(benchmarks, num_samples: Optional[int]) -> List[LoadedBenchmark]:
    """Every benchmark loaded (names from the hub), cut to its first `num_samples` problems."""
    loaded = [b if isinstance(b, LoadedBenchmark) else load_benchmark(b, num_samples=num_samples) for b in benchmarks]
    if num_samples is not None:
        loaded = [LoadedBenchmark(b.name, b.domain, b.source, b.rows[:num_samples], b.rows_read, b.skipped) for b in loaded]
    for bench in loaded:
        if not bench.rows:
            raise ValueError(f"benchmark {bench.name!r} has no rows to evaluate")
    return loaded


def _scores(loaded, generators, ks, out_dir, batch_size: int, progress: bool) -> Dict[str, dict]:
    """Run every benchmark; {section of the summary: {benchmark: its value}}."""
    scores: Dict[str, dict] = {"num_samples": {}, "metrics": {}, "figfont_metrics": {}, "by_source": {},
                               "source_average": {}}
    for bench in loaded:
        k = ks[bench.name]
        records = run_benchmark(bench, generators[bench.name], out_dir, batch_size=batch_size, progress=progress,
                                num_generations=k)
        scores["num_samples"][bench.name] = len(records)
        scores["metrics"][bench.name] = benchmark_metrics(records, k)
        if bench.domain == "figfont":
            scores["figfont_metrics"][bench.name] = figfont_summary(records)
        sources = source_summary(records, k)
        if sources is not None:
            scores["by_source"][bench.name] = sources["by_source"]
            scores["source_average"][bench.name] = sources["average"]
    return scores


def _summary(loaded, ks, settings, scores, objective: str, loss: Optional[str]) -> Dict[str, Any]:
    """The summary.json of the run (see the module's docstring for its keys)."""
    metrics = scores["metrics"]
    accuracy = {name: m["first_sample"] for name, m in metrics.items()}
    summary: Dict[str, Any] = {"objective": objective.strip()}
    if loss is not None:
        summary["loss"] = loss
    summary.update({
        "accuracy": accuracy,
        "first_sample_accuracy": dict(accuracy),
        "num_generations": {b.name: ks[b.name] for b in loaded},
        "mean_at_k": {name: m["mean_at_k"] for name, m in metrics.items()},
        "pass_at_k": {name: m["pass_at_k"] for name, m in metrics.items()},
        "num_samples": scores["num_samples"],
        "average": sum(accuracy.values()) / len(accuracy),
        "skipped_rows": {b.name: dict(b.skipped) for b in loaded},
        "sources": {b.name: b.source for b in loaded},
    })
    if settings is not None:
        summary["sampling"] = {name: asdict(s) for name, s in settings.items()}
    if scores["figfont_metrics"]:
        summary["figfont_metrics"] = scores["figfont_metrics"]
    if scores["by_source"]:
        summary["by_source"], summary["source_average"] = scores["by_source"], scores["source_average"]
    return summary


def evaluate_benchmarks(
    benchmarks: Sequence[Union[str, LoadedBenchmark]],
    generate: Union[Generate, Mapping[str, Generate]],
    out_dir: Union[str, Path],
    *,
    num_samples: Optional[int] = None,
    num_generations: Union[int, Mapping[str, int]] = 1,
    sampling: Optional[Mapping[str, Sampling]] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    objective: str = "unknown",
    loss: Optional[str] = None,
) -> Dict[str, Any]:
    """Answer every benchmark with `generate(prompts) -> outputs`, grade, write the records and
    `out_dir/summary.json`, and return the summary.

    `benchmarks` are loaded benchmarks (:func:`~nemo_beyond_nll.eval.benchmark_sets.load_benchmarks`)
    or names, loaded from the hub (or generated). `generate` is one function for all, or a mapping
    {benchmark: function} (one sampling setting each). `num_generations` is k, the outputs asked
    of `generate` per problem: one number, or a mapping {benchmark: k}. `sampling` ({benchmark:
    :class:`~.sampling.Sampling`}) is how `generate` decodes each benchmark; it is recorded in the
    summary, and its num_generations is k when `num_generations` is left at 1. `num_samples`
    keeps each benchmark's first that many problems. `objective` (and `loss`, the objective's
    name) label the run in the summary.
    """
    names = _check_arguments(benchmarks, generate, batch_size, objective, num_samples)
    generators = _per_benchmark(generate, names, "generate", _check_generate)
    settings = None if sampling is None else _per_benchmark(sampling, names, "sampling", _check_sampling)
    if settings is not None and num_generations == 1:
        num_generations = {name: s.num_generations for name, s in settings.items()}
    ks = _per_benchmark(num_generations, names, "num_generations", _check_generations)
    loaded = _loaded(benchmarks, num_samples)
    scores = _scores(loaded, generators, ks, out_dir, batch_size, progress)
    summary = _summary(loaded, ks, settings, scores, objective, loss)
    _write_summary(RunFolder(out_dir).summary, summary)
    return summary


def _write_summary(path: Path, summary: Dict[str, Any]) -> None:
    # Written whole and renamed: `compare` may read it while another evaluation runs.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
