"""The capability continuum on a CPU: one base model, fine-tuned at its strong and its weak end.

1. Pre-train a tiny Megatron GPT on a mixture of synthetic tasks (`continuum.pretrain_task`).
2. Strong end: fine-tune copies on a task of that family with partly noisy labels (the model already
   knows the task; some supervision contradicts it). Weak end: fine-tune on a task it never saw.
3. Each end with every objective of `continuum.objectives`, over `continuum.seeds`; evaluate on clean
   held-out prompts; probe the base model at each end and record the probe's recommendation.
4. One table of mean and spread of held-out accuracy, as Markdown, CSV and PNG.

Runs inside one torchrun group (one process per tensor-parallel rank); every run is resumable and a
rerun skips the runs that finished.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import sys
from pathlib import Path

import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from ...core.objectives import get_objective
from ...run_folder import RunFolder
from .trainer import probe_base, train
from ...utils.files import atomic_write, atomic_write_text


def variant(cfg: DictConfig, run_dir: Path, **changes) -> DictConfig:
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key, value in changes.items():
        OmegaConf.update(out, key, value, force_add=True)
    OmegaConf.update(out, "checkpoint.dir", str(run_dir))
    return out


def seed_runs(cfg: DictConfig, parent: Path, name: str, common: dict) -> list:
    """The summaries of fine-tuning with objective `name` once per seed of continuum.seeds, in
    `parent/<name>/seed<k>`; a run that finished before is read, not run again."""
    summaries = []
    for seed in cfg.continuum.seeds:
        run_dir = parent / slug(name) / f"seed{seed}"
        if RunFolder(run_dir).finished():
            summaries.append(json.loads(RunFolder(run_dir).summary.read_text()))
        else:
            summaries.append(train(variant(cfg, run_dir, **common, **{
                "model.loss": name, "model.loss_args": {}, "trainer.seed": seed, "data.seed": seed}), run_dir))
    return summaries


def slug(objective_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", objective_name).strip("-")


def run_continuum(cfg: DictConfig, out_dir: Path) -> list:
    c = cfg.continuum
    base_dir = out_dir / "base"
    base_cfg = variant(cfg, base_dir, **{"data.task": c.pretrain_task, "data.noise": 0.0, "model.loss": "nll",
                                          "model.loss_args": {}, "trainer.max_steps": c.pretrain_steps,
                                          "optim.lr": c.pretrain_lr})
    if not RunFolder(base_dir).finished():
        train(base_cfg, base_dir)

    rows, probes = [], {}
    for end_name in ("strong", "weak"):
        end = c[end_name]
        common = {"model.pretrained_checkpoint": str(base_dir), "data.task": end.task, "data.noise": end.noise,
                  "trainer.max_steps": end.steps}
        stats, rec = probe_base(variant(cfg, out_dir / end_name, **common), out_dir / end_name)
        probes[end_name] = {"mean_p": stats.mean_p, "p>0.5": stats.fraction_above["p>0.5"],
                            "placement": rec.placement, "recommended": rec.overrides()}
        for name in c.objectives:
            objective = get_objective(name)
            accuracies = [s["accuracy"][end.task] for s in seed_runs(cfg, out_dir / end_name, name, common)]
            rows.append({"end": end_name, "task": end.task, "noise": end.noise, "objective": str(objective),
                         "mean": statistics.mean(accuracies),
                         "std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                         "seeds": accuracies})
    if dist.get_rank() == 0:
        write_results(rows, probes, out_dir)
    return rows


def markdown_table(rows: list, probes: dict) -> str:
    lines = ["| end | task (label noise) | objective | held-out accuracy, mean ± std | per seed |",
             "|---|---|---|---:|---|"]
    for r in rows:
        seeds = ", ".join(f"{a:.1%}" for a in r["seeds"])
        lines.append(f"| {r['end']} | {r['task']} ({r['noise']:.0%}) | {r['objective']} "
                     f"| {r['mean']:.1%} ± {r['std']:.1%} | {seeds} |")
    lines.append("")
    for end, p in probes.items():
        best = max((r for r in rows if r["end"] == end), key=lambda r: r["mean"])
        lines.append(f"- {end} end: base-model mean p {p['mean_p']:.3f}, {p['p>0.5']:.0%} of tokens above 0.5; "
                     f"probe places it at the {p['placement']} end and recommends `{p['recommended']}`; "
                     f"best here: {best['objective']}")
    return "\n".join(lines)


def write_results(rows: list, probes: dict, out_dir: Path) -> None:
    table = markdown_table(rows, probes)
    atomic_write_text(out_dir / "continuum.md", table + "\n")
    atomic_write_text(out_dir / "probes.json", json.dumps(probes, indent=2) + "\n")

    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["end", "task", "noise", "objective", "mean", "std", "seeds"])
            for r in rows:
                writer.writerow([r["end"], r["task"], r["noise"], r["objective"], f"{r['mean']:.4f}",
                                 f"{r['std']:.4f}", " ".join(f"{a:.4f}" for a in r["seeds"])])

    atomic_write(out_dir / "continuum.csv", write_csv)
    plot_results(rows, out_dir / "continuum.png")
    print(table, file=sys.stderr)


def plot_results(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends = list(dict.fromkeys(r["end"] for r in rows))
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    width = 0.8 / len(objectives)
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, name in enumerate(objectives):
        sub = [next(r for r in rows if r["end"] == e and r["objective"] == name) for e in ends]
        ax.bar([x + i * width for x in range(len(ends))], [r["mean"] for r in sub], width,
               yerr=[r["std"] for r in sub], capsize=3, label=name)
    ax.set_xticks([x + width * (len(objectives) - 1) / 2 for x in range(len(ends))],
                  [f"{e} end\n({next(r['task'] for r in rows if r['end'] == e)})" for e in ends])
    ax.set_ylabel("held-out exact match")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("objectives along the capability continuum (mean ± std over seeds)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
