"""The paper's tables as jobs: `nemo-beyond-nll reproduce TABLE` (math, medical, figfont).

A table is a set of recipes under recipes/paper/ (one per backbone) and a list of objectives, both
in recipes/paper/published.yaml with the paper's own figures. :func:`table_jobs` lists every
(recipe, objective) job with its resolved config; :func:`run_table` runs each job not finished yet
(no summary.json in its run folder) through the callables it is given (the CLI's sft and eval), then
writes the comparison of the finished runs (eval.compare) and `published.md`, the paper's figures
for the same table, next to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import yaml
from omegaconf import DictConfig

from .config import ConfigError
from .eval.compare import SUMMARY_FILE, compare_runs
from .recipe import load_recipe

PAPER_DIR = Path(__file__).resolve().parents[1] / "recipes" / "paper"
PUBLISHED_FILE = "published.yaml"
TABLES = ("math", "medical", "figfont")


@dataclass
class Job:
    recipe: Path
    objective: Dict[str, Any]
    overrides: List[str]
    cfg: DictConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.checkpoint.dir)

    @property
    def done(self) -> bool:
        return (self.run_dir / SUMMARY_FILE).is_file()

    @property
    def label(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in (self.objective.get("loss_args") or {}).items())
        return f"{self.recipe.stem} {self.objective['loss']}" + (f"({args})" if args else "")


def load_tables(paper_dir: Union[str, Path] = PAPER_DIR) -> Dict[str, Any]:
    path = Path(paper_dir) / PUBLISHED_FILE
    if not path.is_file():
        raise ConfigError(f"no {PUBLISHED_FILE} in {paper_dir}")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def objective_overrides(objective: Dict[str, Any]) -> List[str]:
    """Hydra overrides selecting `objective` ({loss, loss_args}) on a recipe."""
    out = [f"model.loss={objective['loss']}"]
    out += [f"+model.loss_args.{k}={v}" for k, v in (objective.get("loss_args") or {}).items()]
    return out


def table_jobs(table: str, paper_dir: Union[str, Path] = PAPER_DIR, extra: List[str] = ()) -> List[Job]:
    """Every job of `table`: each backbone's recipe under each objective, resolved and checked."""
    data = load_tables(paper_dir)
    if table not in data.get("tables", {}):
        raise ConfigError(f"unknown table {table!r}; choose from {', '.join(data.get('tables', {}))}")
    jobs = []
    names = {}
    for recipe in data["tables"][table]["recipes"]:
        path = Path(paper_dir) / f"{recipe}.yaml"
        for objective in data["objectives"]:
            overrides = objective_overrides(objective)
            cfg = load_recipe(path, [*overrides, *extra])
            tag = "_".join(f"{k}{v}" for k, v in (objective.get("loss_args") or {}).items())
            if tag:  # one run folder per objective and arguments
                cfg.checkpoint.dir = f"{cfg.checkpoint.dir}_{tag}"
            if cfg.checkpoint.dir in names:
                raise ConfigError(f"two jobs share the run folder {cfg.checkpoint.dir}")
            names[cfg.checkpoint.dir] = True
            jobs.append(Job(path, objective, [*overrides, *extra], cfg))
    return jobs


def published_markdown(table: str, paper_dir: Union[str, Path] = PAPER_DIR) -> str:
    """The paper's own figures for `table` as a Markdown table, or a line saying there are none."""
    entry = load_tables(paper_dir)["tables"][table]
    published = entry.get("published") or {}
    benchmarks = entry["benchmarks"]
    if not published:
        return (f"# {table}: the paper's published figures\n\nNone recorded: fill `tables.{table}.published` in "
                f"recipes/paper/{PUBLISHED_FILE} from the paper's {table} table.\n")
    lines = [f"# {table}: the paper's published figures (percent)", "",
             "| run | objective | " + " | ".join(benchmarks) + " |", "|---|---|" + "---|" * len(benchmarks)]
    for recipe, rows in published.items():
        for objective, values in rows.items():
            cells = [str(values.get(b, "-")) for b in benchmarks]
            lines.append(f"| {recipe} | {objective} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_table(table: str, sft: Callable[[DictConfig], int], evaluate: Callable[[DictConfig], int],
              out_dir: Union[str, Path], paper_dir: Union[str, Path] = PAPER_DIR, extra: List[str] = (),
              log: Optional[Callable[[str], None]] = None) -> str:
    """Run the unfinished jobs of `table` (sft, then eval), then write the comparison and the
    paper's figures into `out_dir`. Returns the comparison's Markdown."""
    log = log or (lambda line: None)
    jobs = table_jobs(table, paper_dir, list(extra))
    for job in jobs:
        if job.done:
            log(f"done already: {job.label} ({job.run_dir})")
            continue
        log(f"sft: {job.label}")
        if sft(job.cfg):
            raise RuntimeError(f"sft failed for {job.label}")
        log(f"eval: {job.label}")
        if evaluate(job.cfg):
            raise RuntimeError(f"eval failed for {job.label}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "published.md").write_text(published_markdown(table, paper_dir), encoding="utf-8")
    return compare_runs([job.run_dir for job in jobs if job.done], out_dir)
