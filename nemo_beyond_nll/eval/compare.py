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
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

SUMMARY_FILE = "summary.json"
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


def load_summary(run_dir: Union[str, Path]) -> RunSummary:
    """Read and check `run_dir/summary.json`."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        raise ValueError(f"no {SUMMARY_FILE} in {run_dir}")
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
    return RunSummary(Path(run_dir), objective.strip(), {k: float(v) for k, v in accuracy.items()})


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
    """Write the comparison of `run_dirs` into `out_dir` and return its Markdown table."""
    if isinstance(run_dirs, (str, Path)) or not run_dirs:
        raise ValueError("run_dirs must be a non-empty list of run directories")
    runs = [load_summary(d) for d in run_dirs]
    labels = _labels(runs)
    columns, rows = _table(runs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = _markdown(labels, columns, rows)
    (out_dir / MARKDOWN_FILE).write_text(table, encoding="utf-8")
    _write_csv(out_dir / CSV_FILE, labels, columns, rows)
    _write_chart(out_dir / CHART_FILE, labels, columns, rows)
    return table
