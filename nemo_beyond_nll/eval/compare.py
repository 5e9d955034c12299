"""Compare runs: accuracy per objective and benchmark, as Markdown, CSV and a grouped bar chart.

Every run directory holds `summary.json`:

    {"objective": "neg_p_threshold(threshold=0.1, keep=above)",
     "accuracy": {"math500": 0.412, "minerva_math": 0.183}}

`objective` is the run's training objective as a string (a name such as "nll", or an objective's
str()); `accuracy` maps each benchmark to the fraction of problems solved, in [0, 1].

:func:`compare_runs` writes into `out_dir`:

- `comparison.md`: one row per run, one column per benchmark and the average, in percent with one
  decimal, the best value of each column in bold (also returned);
- `comparison.csv`: the same table with fractions at full precision;
- `comparison.png`: the table as grouped bars.

A run without some benchmark shows "-" there and has no average, since an average over other
benchmarks would not compare with the rest.

The first table is `accuracy` (the first generation's). When some summary holds more (see
:mod:`nemo_beyond_nll.eval.runner`), more tables follow in `comparison.md`, each under a heading
and each also written as `comparison_<name>.csv`: `mean@k` and `pass@k` (when some benchmark has
k > 1 generations), `figfont` (exact match, case-insensitive match, Jaro-Winkler similarity), and
`<benchmark> by source` (accuracy per source and their unweighted average). Summaries without
these keys still compare: their cells are "-".
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..run_folder import RunFolder

MARKDOWN_FILE = "comparison.md"
CSV_FILE = "comparison.csv"
CHART_FILE = "comparison.png"
AVERAGE = "average"
MISSING = "-"


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    objective: str
    accuracy: Dict[str, float]
    extra: Dict[str, Any] = field(default_factory=dict)  # the rest of summary.json


def load_summary(run_dir: Union[str, Path]) -> RunSummary:
    """Read and check `run_dir/summary.json`."""
    path = RunFolder(run_dir).summary
    if not path.is_file():
        raise ValueError(f"no {path.name} in {run_dir}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold an object with 'objective' and 'accuracy'")
    objective, accuracy = data.get("objective"), data.get("accuracy")
    if not isinstance(objective, str) or not objective.strip():
        raise ValueError(f"{path}: 'objective' must be a non-empty string, got {objective!r}")
    if not isinstance(accuracy, dict) or not accuracy:
        raise ValueError(f"{path}: 'accuracy' must map benchmark names to fractions, got {accuracy!r}")
    for benchmark, value in accuracy.items():
        if benchmark == AVERAGE:
            raise ValueError(f"{path}: {AVERAGE!r} is computed here and cannot be a benchmark name")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{path}: accuracy of {benchmark!r} must be a fraction in [0, 1], got {value!r}")
    extra = {k: v for k, v in data.items() if k not in ("objective", "accuracy")}
    return RunSummary(Path(run_dir), objective.strip(), {k: float(v) for k, v in accuracy.items()}, extra)


def _fraction(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        return None
    return float(value)


def _section(runs: Sequence[RunSummary], cells, average: bool) -> Optional[Tuple[List[str], List[List[Optional[float]]]]]:
    """A table from `cells(run) -> {column: value}`; None when no run has any value."""
    per_run = [{c: _fraction(v) for c, v in cells(run).items()} for run in runs]
    columns: List[str] = []
    for values in per_run:
        columns += [c for c, v in values.items() if v is not None and c not in columns]
    if not columns:
        return None
    rows = []
    for values in per_run:
        row = [values.get(c) for c in columns]
        if average:
            row.append(None if None in row else sum(row) / len(row))
        rows.append(row)
    return columns + ([AVERAGE] if average else []), rows


def _dict(run: RunSummary, key: str) -> Dict[str, Any]:
    value = run.extra.get(key)
    return value if isinstance(value, dict) else {}


def _k(run: RunSummary, benchmark: str) -> int:
    k = _dict(run, "num_generations").get(benchmark, 1)
    return k if isinstance(k, int) and not isinstance(k, bool) and k >= 1 else 1


def _extra_sections(runs: Sequence[RunSummary]) -> List[Tuple[str, str, Tuple[List[str], list]]]:
    """(heading, file name part, table) of every further table the summaries hold."""
    sections = []
    sampled = any(_k(run, b) > 1 for run in runs for b in run.accuracy)
    if sampled:
        mean = _section(runs, lambda r: {f"{b} (k={_k(r, b)})": v for b, v in _dict(r, "mean_at_k").items()}, True)
        passes = _section(runs, lambda r: {
            f"{b} pass@{_k(r, b)}": (v.get(str(_k(r, b))) if isinstance(v, dict) else None)
            for b, v in _dict(r, "pass_at_k").items()}, True)
        sections += [(title, name, table) for title, name, table in
                     (("mean@k", "mean_at_k", mean), ("pass@k", "pass_at_k", passes)) if table]
    figfont = _section(runs, lambda r: {f"{b} {metric}": value for b, metrics in _dict(r, "figfont_metrics").items()
                                        if isinstance(metrics, dict) for metric, value in metrics.items()}, False)
    if figfont:
        sections.append(("figfont", "figfont", figfont))
    benchmarks: List[str] = []
    for run in runs:
        benchmarks += [b for b in _dict(run, "by_source") if b not in benchmarks]
    for bench in benchmarks:
        def cells(run, bench=bench):
            scores = _dict(run, "by_source").get(bench)
            if not isinstance(scores, dict):
                return {}
            values = {s: v.get("accuracy") if isinstance(v, dict) else None for s, v in scores.items()}
            values[AVERAGE] = _dict(run, "source_average").get(bench)
            return values

        table = _section(runs, cells, False)
        if table:
            sections.append((f"{bench} by source", f"{bench}_by_source", table))
    return sections


def _labels(runs: Sequence[RunSummary]) -> List[str]:
    """Objectives name the rows; runs of the same objective also get their directory's name."""
    names = [run.objective for run in runs]
    labels = [f"{run.objective} ({run.run_dir.name})" if names.count(run.objective) > 1 else run.objective for run in runs]
    if len(set(labels)) < len(labels):  # same objective and same directory name: number them
        labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
    return labels


def _table(runs: Sequence[RunSummary]):
    benchmarks: List[str] = []
    for run in runs:
        benchmarks += [b for b in run.accuracy if b not in benchmarks]
    rows = []
    for run in runs:
        values = [run.accuracy.get(b) for b in benchmarks]
        average = None if None in values else sum(values) / len(values)
        rows.append(values + [average])
    return benchmarks + [AVERAGE], rows


def _best(rows: List[List[Optional[float]]], column: int) -> Optional[float]:
    present = [row[column] for row in rows if row[column] is not None]
    return max(present) if present else None


def _markdown(labels: List[str], columns: List[str], rows) -> str:
    lines = ["| objective | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    bests = [_best(rows, c) for c in range(len(columns))]
    for label, row in zip(labels, rows):
        cells = []
        for value, best in zip(row, bests):
            if value is None:
                cells.append(MISSING)
            else:
                text = f"{100 * value:.1f}"
                cells.append(f"**{text}**" if len(rows) > 1 and math.isclose(value, best) else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, labels: List[str], columns: List[str], rows):
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["objective", *columns])
        for label, row in zip(labels, rows):
            writer.writerow([label, *("" if v is None else repr(v) for v in row)])


def _write_chart(path: Path, labels: List[str], columns: List[str], rows):
    # Figure and the Agg canvas directly: no pyplot, so the caller's backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(6.0, 3.0 + (0.8 + 0.25 * len(labels)) * len(columns)), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(labels)
    for i, (label, row) in enumerate(zip(labels, rows)):
        xs = [c + (i - (len(labels) - 1) / 2) * width for c in range(len(columns))]
        axes.bar(xs, [math.nan if v is None else 100 * v for v in row], width, label=label)  # nan: no bar
    axes.set_xticks(range(len(columns)), columns, rotation=20 if len(columns) > 4 else 0)
    axes.set_ylabel("accuracy (%)")
    axes.set_title("Accuracy by objective")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def compare_runs(run_dirs: Sequence[Union[str, Path]], out_dir: Union[str, Path]) -> str:
    """Write the comparison of `run_dirs` into `out_dir` and return its Markdown (the accuracy
    table, then any further tables the summaries hold)."""
    if isinstance(run_dirs, (str, Path)) or not run_dirs:
        raise ValueError("run_dirs must be a non-empty list of run directories")
    runs = [load_summary(d) for d in run_dirs]
    labels = _labels(runs)
    columns, rows = _table(runs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = _markdown(labels, columns, rows)
    for title, name, (extra_columns, extra_rows) in _extra_sections(runs):
        table += f"\n### {title}\n\n" + _markdown(labels, extra_columns, extra_rows)
        _write_csv(out_dir / f"comparison_{name}.csv", labels, extra_columns, extra_rows)
    (out_dir / MARKDOWN_FILE).write_text(table, encoding="utf-8")
    _write_csv(out_dir / CSV_FILE, labels, columns, rows)
    _write_chart(out_dir / CHART_FILE, labels, columns, rows)
    return table
