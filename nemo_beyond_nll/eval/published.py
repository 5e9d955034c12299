"""Our runs beside a paper's published figures: the paper's columns, ours, and the difference.

A table is described by plain data (one entry of recipes/paper/published.yaml's `tables`):

    {"columns": [{"name": "Math500", "read": ["mean_at_k", "math500"]}, ..., {"name": "Avg"}],
     "published": {recipe: {objective key: {column name: percent}}},
     "layout": "by_row" (default) | "by_objective", "metric": "what the figures measure",
     "note": "a line printed under the table"}

A column's `read` is the path of our value (a fraction) inside a run's summary.json; the column
named `Avg` has none: ours is the plain mean of the paper's columns before it, the paper's is its
figure as printed (a note under the table lists the printed averages that are not the plain mean
of their row). A column with `paper: false` is ours alone.

:func:`write_paper_comparison` writes into `out_dir`:

- `paper_comparison.md`: per backbone and objective, the paper's row, ours and the difference
  (ours - paper, in points), in the paper's column names and order (also returned). With
  layout `by_objective` (figfont) there is one table per column, objectives across, as the paper
  prints it. A job not finished yet shows `-` in its row, marked "not run yet";
- `paper_comparison.csv`: one line per (backbone, objective, column): paper, ours, difference;
- `paper_comparison.png`: the headline figures (Avg, or every column of a by_objective table),
  the paper's bars solid and ours hatched beside them.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

AVERAGE = "Avg"
MARKDOWN_FILE = "paper_comparison.md"
CSV_FILE = "paper_comparison.csv"
CHART_FILE = "paper_comparison.png"
LAYOUTS = ("by_row", "by_objective")
MISSING = "-"
ROUNDING = 0.006  # a printed average further than this from its row's mean is not the plain mean


@dataclass(frozen=True)
class Row:
    """One job of the table: its backbone (recipe), objective key, and labels to print."""

    recipe: str
    objective: str
    backbone: str  # e.g. "Qwen2.5-Math-1.5B"
    label: str  # the objective as the paper writes it, e.g. "-log p"
    in_paper: bool = True


Cells = Dict[str, Optional[float]]  # column name -> percent


def read_value(summary: Mapping[str, Any], path: Sequence[str]) -> Optional[float]:
    """The fraction at `path` inside `summary`, in percent; None where it is absent or not a fraction."""
    value: Any = summary
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        return None
    return 100.0 * float(value)


def _paper_columns(spec: Mapping[str, Any]) -> List[str]:
    return [c["name"] for c in spec["columns"] if c.get("paper", True) and c["name"] != AVERAGE]


def our_cells(spec: Mapping[str, Any], summary: Optional[Mapping[str, Any]]) -> Cells:
    """Our value of every column from one run's summary (all None when the run is not finished)."""
    cells: Cells = {}
    for column in spec["columns"]:
        if column["name"] != AVERAGE:
            cells[column["name"]] = None if summary is None else read_value(summary, column["read"])
    if any(c["name"] == AVERAGE for c in spec["columns"]):
        values = [cells[name] for name in _paper_columns(spec)]
        cells[AVERAGE] = None if None in values else sum(values) / len(values)
    return cells


def paper_cells(spec: Mapping[str, Any], row: Row) -> Cells:
    figures = (spec.get("published") or {}).get(row.recipe, {}).get(row.objective, {})
    return {c["name"]: (float(figures[c["name"]]) if c["name"] in figures else None) for c in spec["columns"]}


def unplain_averages(spec: Mapping[str, Any], rows: Sequence[Row]) -> List[str]:
    """The rows whose printed Avg is not the plain mean of their printed columns, as text."""
    notes = []
    for row in rows:
        paper = paper_cells(spec, row)
        values = [paper[name] for name in _paper_columns(spec)]
        if paper.get(AVERAGE) is None or None in values or not values:
            continue
        mean = sum(values) / len(values)
        if abs(mean - paper[AVERAGE]) > ROUNDING:
            notes.append(f"{row.backbone} {row.label}: {paper[AVERAGE]:.2f} printed, {mean:.2f} by the mean")
    return notes


def _number(value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return MISSING
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _difference(ours: Optional[float], paper: Optional[float]) -> Optional[float]:
    return None if ours is None or paper is None else ours - paper


def _objective_label(row: Row) -> str:
    return row.label if row.in_paper else f"{row.label} (not in the paper)"


def _by_row_markdown(spec, rows: Sequence[Row], ours: Mapping[Tuple[str, str], Cells]) -> str:
    names = [c["name"] for c in spec["columns"]]
    lines = ["| backbone | objective | | " + " | ".join(names) + " |", "|---|---|---|" + "---:|" * len(names)]
    for row in rows:
        mine, paper = ours[(row.recipe, row.objective)], paper_cells(spec, row)
        done = any(v is not None for v in mine.values())
        lines.append(f"| {row.backbone} | {_objective_label(row)} | paper | "
                     + " | ".join(_number(paper[n]) for n in names) + " |")
        lines.append("| | | " + ("ours" if done else "ours (not run yet)") + " | "
                     + " | ".join(_number(mine[n]) for n in names) + " |")
        lines.append("| | | diff | " + " | ".join(_number(_difference(mine[n], paper[n]), True) for n in names) + " |")
    return "\n".join(lines) + "\n"


def _by_objective_markdown(spec, rows: Sequence[Row], ours: Mapping[Tuple[str, str], Cells]) -> str:
    backbones = list(dict.fromkeys((r.recipe, r.backbone) for r in rows))
    objectives = list(dict.fromkeys((r.objective, _objective_label(r)) for r in rows))
    by_key = {(r.recipe, r.objective): r for r in rows}
    parts = []
    for column in spec["columns"]:
        name = column["name"]
        lines = [f"#### {name}", "", "| backbone | | " + " | ".join(label for _, label in objectives) + " |",
                 "|---|---|" + "---:|" * len(objectives)]
        for recipe, backbone in backbones:
            paper, mine = [], []
            for key, _ in objectives:
                row = by_key.get((recipe, key))
                paper.append(None if row is None else paper_cells(spec, row)[name])
                mine.append(None if row is None else ours[(recipe, key)][name])
            lines.append(f"| {backbone} | paper | " + " | ".join(map(_number, paper)) + " |")
            lines.append("| | ours | " + " | ".join(map(_number, mine)) + " |")
            lines.append("| | diff | " + " | ".join(_number(_difference(m, p), True) for m, p in zip(mine, paper)) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def paper_comparison_markdown(title: str, spec: Mapping[str, Any], rows: Sequence[Row],
                              ours: Mapping[Tuple[str, str], Cells]) -> str:
    """The comparison as Markdown (see the module's docstring)."""
    layout = spec.get("layout", "by_row")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    finished = sum(any(v is not None for v in ours[(r.recipe, r.objective)].values()) for r in rows)
    text = [f"### {title}: ours beside the paper's figures (percent)", ""]
    if spec.get("metric"):
        text += [f"Metric: {spec['metric']}. Jobs finished: {finished} of {len(rows)}. "
                 "diff = ours - paper, in points.", ""]
    text.append(_by_row_markdown(spec, rows, ours) if layout == "by_row" else _by_objective_markdown(spec, rows, ours))
    notes = []
    if any(c["name"] == AVERAGE for c in spec["columns"]):
        notes.append(f"{AVERAGE}: ours is the plain mean of the columns "
                     f"{', '.join(_paper_columns(spec))}; the paper's is its figure as printed.")
        unplain = unplain_averages(spec, [r for r in rows if r.in_paper])
        if unplain:
            notes.append("Printed averages that are not the plain mean of their row: " + "; ".join(unplain) + ".")
    alone = [c["name"] for c in spec["columns"] if not c.get("paper", True)]
    if alone:
        notes.append(f"{', '.join(alone)}: ours alone; the paper prints no such column.")
    if spec.get("note"):
        notes.append(spec["note"])
    if notes:
        text[-1] = text[-1].rstrip("\n") + "\n"
        text += [""] + [f"- {note}" for note in notes]
    return "\n".join(text).rstrip("\n") + "\n"


def _write_csv(path: Path, spec, rows: Sequence[Row], ours) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["backbone", "objective", "in_paper", "column", "paper", "ours", "diff"])
        for row in rows:
            mine, paper = ours[(row.recipe, row.objective)], paper_cells(spec, row)
            for column in spec["columns"]:
                name = column["name"]
                cells = (paper[name], mine[name], _difference(mine[name], paper[name]))
                writer.writerow([row.backbone, row.label, row.in_paper, name,
                                 *("" if v is None else repr(v) for v in cells)])


def _write_chart(path: Path, title: str, spec, rows: Sequence[Row], ours) -> None:
    # Figure and the Agg canvas directly: no pyplot, so the caller's backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [c["name"] for c in spec["columns"]]
    headline = [AVERAGE] if spec.get("layout", "by_row") == "by_row" and AVERAGE in names else names
    backbones = list(dict.fromkeys((r.recipe, r.backbone) for r in rows))
    objectives = list(dict.fromkeys((r.objective, _objective_label(r)) for r in rows))
    by_key = {(r.recipe, r.objective): r for r in rows}
    figure = Figure(figsize=(max(6.0, 1.2 + 0.5 * len(objectives) * len(backbones)), 3.6 * len(headline)))
    FigureCanvasAgg(figure)
    width = 0.8 / (2 * len(objectives))
    for i, name in enumerate(headline):
        axes = figure.add_subplot(len(headline), 1, i + 1)
        for j, (key, label) in enumerate(objectives):
            color = f"C{j}"
            for k, source in enumerate(("paper", "ours")):
                heights = []
                for recipe, _ in backbones:
                    row = by_key.get((recipe, key))
                    cells = None if row is None else (paper_cells(spec, row) if source == "paper" else ours[(recipe, key)])
                    value = None if cells is None else cells[name]
                    heights.append(math.nan if value is None else value)  # nan: no bar
                offset = (2 * j + k - (2 * len(objectives) - 1) / 2) * width
                axes.bar([b + offset for b in range(len(backbones))], heights, width, color=color,
                         hatch="//" if source == "ours" else None, alpha=0.55 if source == "ours" else 1.0,
                         label=f"{label} ({source})")
        axes.set_xticks(range(len(backbones)), [b for _, b in backbones])
        axes.set_ylabel(f"{name} (%)")
        axes.grid(axis="y", alpha=0.3)
        axes.legend(fontsize="x-small", ncol=2)
        axes.set_title(f"{title}: {name}, the paper's (solid) and ours (hatched)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write_paper_comparison(title: str, spec: Mapping[str, Any], rows: Sequence[Row],
                           summaries: Mapping[Tuple[str, str], Optional[Mapping[str, Any]]],
                           out_dir: Union[str, Path]) -> str:
    """Write the comparison of `rows` (their summaries, None for a job not finished) with the
    paper's figures into `out_dir`; returns its Markdown."""
    ours = {(r.recipe, r.objective): our_cells(spec, summaries.get((r.recipe, r.objective))) for r in rows}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = paper_comparison_markdown(title, spec, rows, ours)
    (out_dir / MARKDOWN_FILE).write_text(markdown, encoding="utf-8")
    _write_csv(out_dir / CSV_FILE, spec, rows, ours)
    _write_chart(out_dir / CHART_FILE, title, spec, rows, ours)
    return markdown
