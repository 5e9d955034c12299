"""The paper's tables as jobs: `nemo-beyond-nll reproduce TABLE` (math, medical, figfont) and its
quantile ablation, `nemo-beyond-nll reproduce quantiles`.

The paper's recipes ship inside the package (nemo_beyond_nll/recipes/paper/, which a source
checkout also reaches as recipes/paper/). Their published.yaml holds, per table, its backbones (one
recipe each), the objectives the paper printed for it, its columns and the paper's figures (see the
file's header). :func:`table_jobs` lists the jobs: by default the paper's own set (every backbone under
every objective the paper printed, and one `base` job per backbone that evaluates the untrained
backbone); `objectives="all"` or a list of keys adds rows the paper does not have, marked so.
:func:`run_table` runs each job not finished yet (no summary.json in its run folder) through the
callables it is given (the CLI's sft and eval), then writes our figures beside the paper's
(:mod:`.eval.published`) and the plain comparison of the finished runs (:mod:`.eval.compare`).

The quantile ablation (:func:`quantile_jobs`) reads the percentiles of the base model's
target-token probabilities from the probe's report (probe.json's `percentiles`) and plans, for
each percentile and each of its objectives, a job keeping the tokens above it and one keeping those
below it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import yaml
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError
from .eval.compare import compare_runs
from .eval.published import Row, write_paper_comparison
from .recipe import input_problems, load_recipe, resolved_yaml
from .run_folder import RunFolder

# Package data, so an installed wheel has them as a source checkout does (pip installs a package
# as files, so the folder is a real path the recipe loader can open).
PAPER_DIR = Path(resources.files(__package__) / "recipes" / "paper")
PUBLISHED_FILE = "published.yaml"
QUANTILES_FILE = "quantiles.json"
BASE = "base"  # the objective key of a job that trains nothing
TABLES = ("math", "medical", "figfont")  # the tables of published.yaml (tests/test_paper_recipes.py checks)
QUANTILES = "quantiles"  # the quantile ablation, `reproduce quantiles`


@dataclass
class Job:
    recipe: Path
    key: str  # the objective's key in published.yaml (or a quantile job's own)
    objective: Dict[str, Any]  # {label, loss, loss_args}; no loss for the base job
    overrides: List[str]
    cfg: DictConfig
    in_paper: bool = True
    published: Dict[str, float] = field(default_factory=dict)  # the paper's figures of this row, by column

    @property
    def published_figures(self) -> str:
        """The paper's figures this job is compared with, on one line."""
        if not self.published:
            return "no published figure (not in the paper)"
        return ", ".join(f"{name} {value:.2f}" for name, value in self.published.items())

    @property
    def trains(self) -> bool:
        return "loss" in self.objective

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.checkpoint.dir)

    @property
    def done(self) -> bool:
        return RunFolder(self.run_dir).finished()

    @property
    def label(self) -> str:
        return f"{self.recipe.stem} {self.objective['label']}" + ("" if self.in_paper else " (not in the paper)")

    @property
    def command(self) -> str:
        return f"nemo-beyond-nll {'sft' if self.trains else 'eval'} --config {self.recipe} " + " ".join(self.overrides)


def load_tables(paper_dir: Union[str, Path] = PAPER_DIR) -> Dict[str, Any]:
    path = Path(paper_dir) / PUBLISHED_FILE
    if not path.is_file():
        raise ConfigError(f"no {PUBLISHED_FILE} in {paper_dir}")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def objective_overrides(objective: Mapping[str, Any]) -> List[str]:
    """Hydra overrides selecting `objective` ({loss, loss_args}) on a recipe; the base job's select
    the untrained backbone for evaluation."""
    if "loss" not in objective:
        return ["eval.model=base"]
    out = [f"model.loss={objective['loss']}"]
    out += [f"+model.loss_args.{k}={v}" for k, v in (objective.get("loss_args") or {}).items()]
    return out


def _run_dir(cfg: DictConfig, objective: Mapping[str, Any]) -> str:
    """The job's run folder: the recipe's checkpoint.dir resolved for the job's loss (`base` for
    the base job), with the objective's arguments appended so that each gets its own folder."""
    raw = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    raw.model.loss = objective.get("loss", BASE)
    tag = "_".join(f"{k}{v}" for k, v in (objective.get("loss_args") or {}).items())
    return str(raw.checkpoint.dir) + (f"_{tag}" if tag else "")


def _job(recipe: Path, key: str, objective: Mapping[str, Any], extra: Sequence[str], in_paper: bool) -> Job:
    overrides = [*objective_overrides(objective), *extra]
    cfg = load_recipe(recipe, overrides)
    cfg.checkpoint.dir = _run_dir(cfg, objective)
    overrides.append(f"checkpoint.dir={cfg.checkpoint.dir}")  # so that the printed command is exact
    return Job(recipe, key, dict(objective), overrides, cfg, in_paper)


def _unique_run_dirs(jobs: Sequence[Job]) -> List[Job]:
    seen: Dict[Path, str] = {}
    for job in jobs:
        if job.run_dir in seen:
            raise ConfigError(f"two jobs share the run folder {job.run_dir} ({seen[job.run_dir]} and {job.label}): "
                              "keep ${model.loss} in checkpoint.dir")
        seen[job.run_dir] = job.label
    return list(jobs)


def _objective_keys(data: Mapping[str, Any], table: str, objectives: Union[None, str, Sequence[str]]) -> List[str]:
    """The table's objective keys, then the extra ones asked for ("all": every other key)."""
    keys = list(data["tables"][table]["objectives"])
    if objectives is None:
        return keys
    known = list(data["objectives"])
    wanted = [k for k in known if k not in keys] if objectives == "all" else list(objectives)
    for key in wanted:
        if key not in known:
            raise ConfigError(f"unknown objective {key!r} for reproduce; choose from all, {', '.join(known)}")
    return keys + [k for k in wanted if k not in keys]


def table_jobs(table: str, paper_dir: Union[str, Path] = PAPER_DIR, extra: Sequence[str] = (),
               objectives: Union[None, str, Sequence[str]] = None) -> List[Job]:
    """Every job of `table`: each backbone's recipe under each objective (the paper's, and any
    extra asked for), resolved and checked."""
    data = load_tables(paper_dir)
    if table not in data.get("tables", {}):
        raise ConfigError(f"unknown table {table!r}; choose from {', '.join(data.get('tables', {}))}")
    entry = data["tables"][table]
    published = entry.get("published") or {}
    jobs = []
    for recipe in entry["recipes"]:
        for key in _objective_keys(data, table, objectives):
            job = _job(Path(paper_dir) / f"{recipe}.yaml", key, data["objectives"][key], extra,
                       key in entry["objectives"])
            job.published = dict(published.get(recipe, {}).get(key) or {})
            jobs.append(job)
    return _unique_run_dirs(jobs)


def backbone_name(job: Job) -> str:
    """The backbone as a reader knows it: the last part of its Hugging Face id."""
    return str(job.cfg.model.hf_path).rstrip("/").split("/")[-1]


def job_counts(jobs: Sequence[Job]) -> str:
    training = sum(job.trains for job in jobs)
    return f"{training} training jobs and {len(jobs) - training} base jobs"


def _summary(job: Job) -> Optional[Dict[str, Any]]:
    if not job.done:
        return None
    path = RunFolder(job.run_dir).summary
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot read it ({err})") from None


def compare_table(table: str, jobs: Sequence[Job], out_dir: Union[str, Path],
                  paper_dir: Union[str, Path] = PAPER_DIR) -> str:
    """Our finished jobs beside the paper's figures (every job of `jobs` gets its rows; those not
    finished show as such), plus the plain comparison of the finished runs. Returns the Markdown."""
    entry = load_tables(paper_dir)["tables"][table]
    rows = [Row(job.recipe.stem, job.key, backbone_name(job), job.objective["label"], job.in_paper) for job in jobs]
    summaries = {(job.recipe.stem, job.key): _summary(job) for job in jobs}
    markdown = write_paper_comparison(table, entry, rows, summaries, out_dir)
    finished = [job.run_dir for job in jobs if job.done]
    if finished:
        markdown += "\n### every finished run, by its summary\n\n" + compare_runs(finished, out_dir)
    return markdown


def run_jobs(jobs: Sequence[Job], sft: Callable[[DictConfig], int], evaluate: Callable[[DictConfig], int],
             log: Optional[Callable[[str], None]] = None) -> None:
    """Run every unfinished job: sft then eval, or eval alone for a base job."""
    log = log or (lambda line: None)
    for job in jobs:
        if job.done:
            log(f"done already: {job.label} ({job.run_dir})")
            continue
        if job.trains:
            log(f"sft: {job.label}")
            if sft(job.cfg):
                raise RuntimeError(f"sft failed for {job.label}")
        log(f"eval: {job.label}")
        if evaluate(job.cfg):
            raise RuntimeError(f"eval failed for {job.label}")


def run_table(table: str, sft: Callable[[DictConfig], int], evaluate: Callable[[DictConfig], int],
              out_dir: Union[str, Path], paper_dir: Union[str, Path] = PAPER_DIR, extra: Sequence[str] = (),
              objectives: Union[None, str, Sequence[str]] = None,
              log: Optional[Callable[[str], None]] = None) -> str:
    """Run the unfinished jobs of `table`, then write the comparison into `out_dir`; returns its Markdown."""
    jobs = table_jobs(table, paper_dir, extra, objectives)
    run_jobs(jobs, sft, evaluate, log)
    return compare_table(table, jobs, out_dir, paper_dir)


# The quantile ablation ---------------------------------------------------------------------------

def quantile_spec(paper_dir: Union[str, Path] = PAPER_DIR) -> Dict[str, Any]:
    spec = load_tables(paper_dir).get("quantiles")
    if not spec:
        raise ConfigError(f"no quantiles section in {Path(paper_dir) / PUBLISHED_FILE}")
    return spec


def probe_dir(cfg: DictConfig) -> Path:
    """Where the quantile ablation probes the base model: `quantiles/` beside the recipe's runs."""
    return Path(cfg.checkpoint.dir).parent / "quantiles"


def read_percentiles(folder: Union[str, Path]) -> Optional[Dict[int, float]]:
    """The percentiles of the probe's report in `folder` ({5: p, 10: p, ...}), or None before a probe."""
    path = RunFolder(folder).probe
    if not path.is_file():
        return None
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))["stats"]
        return {int(k): float(v) for k, v in stats["percentiles"].items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{path}: no percentiles in it ({err}); probe again") from None


def quantile_jobs(recipe: Union[str, Path], percentiles: Mapping[int, float], extra: Sequence[str] = (),
                  paper_dir: Union[str, Path] = PAPER_DIR) -> List[Job]:
    """For each percentile and each of the ablation's objectives, a job keeping the tokens with p
    above the percentile's value (top) and one keeping those below it (bottom)."""
    spec = quantile_spec(paper_dir)
    missing = [q for q in spec["percentiles"] if q not in percentiles]
    if missing:
        raise ConfigError(f"the probe gave no {missing[0]}th percentile; probe again")
    jobs = []
    for label, base in spec["objectives"].items():
        for keep, side in (("above", "top"), ("below", "bottom")):
            for q in spec["percentiles"]:
                threshold = float(f"{percentiles[q]:.6g}")
                objective = {"label": f"{label} {side} q{q} (p {'>=' if keep == 'above' else '<='} {threshold})",
                             "loss": base["loss"],
                             "loss_args": {**(base.get("loss_args") or {}), "threshold": threshold, "keep": keep}}
                jobs.append(_job(Path(recipe), f"{base['loss']}_{side}{q}", objective, extra, True))
    return _unique_run_dirs(jobs)


def percentile_table(ours: Mapping[int, float], published: Mapping[int, float], recipe: str,
                     published_recipe: str) -> str:
    """Our percentiles beside the authors' published ones, as Markdown."""
    note = "" if recipe == published_recipe else f" (the authors' are for {published_recipe}, not this recipe)"
    lines = [f"percentiles of the base model's target-token probabilities{note}", "",
             "| percentile | ours | the authors' |", "|---:|---:|---:|"]
    for q in sorted(set(ours) | set(published)):
        mine, theirs = ours.get(q), published.get(q)
        lines.append(f"| {q} | {'-' if mine is None else f'{mine:.6g}'} | {'-' if theirs is None else f'{theirs:.6g}'} |")
    return "\n".join(lines) + "\n"


def write_quantiles(folder: Union[str, Path], ours: Mapping[int, float], spec: Mapping[str, Any], recipe: str) -> Path:
    """quantiles.json in the probe's folder: our percentiles and the authors'."""
    from .utils.files import atomic_write_text

    path = Path(folder) / QUANTILES_FILE
    atomic_write_text(path, json.dumps({"recipe": recipe, "percentiles": {str(q): v for q, v in sorted(ours.items())},
                                        "published": {"recipe": spec["recipe"],
                                                      "percentiles": {str(q): v for q, v in spec["published"].items()}}},
                                       indent=2) + "\n")
    return path



# The `reproduce` command ---------------------------------------------------------------------------

def _sft(cfg: DictConfig) -> int:
    from .engines import engine_for

    return engine_for(cfg).sft(cfg)


def _eval(cfg: DictConfig) -> int:
    from .engines import engine_for

    return engine_for(cfg).eval(cfg)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def objectives_arg(value: Optional[str]) -> Union[None, str, List[str]]:
    """--objectives: None (the paper's), "all", or a comma-separated list of keys."""
    if value is None or value == "all":
        return value
    return [key.strip() for key in value.split(",") if key.strip()]


def print_jobs(jobs: Sequence[Job], figures: Optional[str] = None) -> None:
    """The dry run of `reproduce`: per job, its state, folder, the paper's figures (or `figures`),
    command and config."""
    for job in jobs:
        state = "done" if job.done else "to run"
        print(f"## {job.label}  [{state}]  {job.run_dir}\n# paper: {figures or job.published_figures}\n# {job.command}")
        print(resolved_yaml(job.cfg), end="", flush=True)
    print(f"# {job_counts(jobs)}", file=sys.stderr)


def reproduce_table(table: str, *, overrides: Sequence[str] = (), objectives: Optional[str] = None,
                    dry_run: bool = False, compare: bool = False, out: Optional[str] = None) -> int:
    """`reproduce TABLE`: every job of one of the paper's tables, listed (dry_run), run or compared."""
    jobs = table_jobs(table, extra=overrides, objectives=objectives_arg(objectives))
    if dry_run:
        print_jobs(jobs)
        return 0
    out = out or f"runs/paper/{table}/comparison"
    if not compare:
        run_jobs(jobs, _sft, _eval, log=_log)
    print(compare_table(table, jobs, out))
    print(f"wrote {out}/paper_comparison.md, .csv and .png (and comparison.* of the finished runs)", file=sys.stderr)
    return 0


def _probe_base(recipe: Path, folder: Path, overrides: Sequence[str]) -> int:
    """Probe the base model into `folder` (the recipe's engine, on its training data); the exit code."""
    from .engines import engine_for

    probe_cfg = load_recipe(recipe, [*overrides, f"checkpoint.dir={folder}"])
    problems = input_problems(probe_cfg, "probe")
    if problems:
        raise ConfigError(problems[0])
    print(f"probing the base model on the training data into {folder}", file=sys.stderr, flush=True)
    return engine_for(probe_cfg).probe(probe_cfg)


def reproduce_quantiles(*, config: Optional[str] = None, overrides: Sequence[str] = (), dry_run: bool = False,
                        compare: bool = False, out: Optional[str] = None) -> int:
    """`reproduce quantiles`: probe the base model on the training data, take the percentiles of its
    target-token probabilities as thresholds, and list (dry_run) or run the top/bottom jobs."""
    from .engines import engine_for

    spec = quantile_spec()
    recipe = Path(config) if config else PAPER_DIR / f"{spec['recipe']}.yaml"
    cfg = load_recipe(recipe, overrides)
    folder = probe_dir(cfg)
    ours = read_percentiles(folder)
    published = {int(q): float(v) for q, v in spec["published"].items()}
    if ours is None and dry_run and not engine_for(cfg).runs_here:
        # A dry run starts no GPU work: plan with the authors' values, and say so.
        print(f"# the base model is not probed yet ({RunFolder(folder).probe}); the thresholds below are the "
              f"authors' percentiles for {spec['recipe']}: `reproduce quantiles` without --dry-run probes first",
              file=sys.stderr)
        thresholds = published
    else:
        if ours is None:
            code = _probe_base(recipe, folder, overrides)
            if code:
                return code
            ours = read_percentiles(folder)
        write_quantiles(folder, ours, spec, recipe.stem)
        print(percentile_table(ours, published, recipe.stem, spec["recipe"]), file=sys.stderr)
        thresholds = ours
    jobs = quantile_jobs(recipe, thresholds, extra=overrides)
    if dry_run:
        print_jobs(jobs, "none printed (the paper draws this ablation as a figure, Figure 5)")
        return 0
    if not compare:
        run_jobs(jobs, _sft, _eval, log=_log)
    finished = [job.run_dir for job in jobs if job.done]
    if not finished:
        raise ConfigError("no quantile job has finished yet: nothing to compare")
    out = out or str(folder / "comparison")
    print(compare_runs(finished, out))
    print(f"wrote {out}/comparison.md, comparison.csv and comparison.png", file=sys.stderr)
    return 0
