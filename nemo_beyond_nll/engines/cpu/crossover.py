"""The crossover on a CPU: one task, base models that know it less or more, every objective at each.

1. For each entry k of `continuum.sweep.pretrain_steps`, a base model: the tiny Megatron GPT
   pre-trained k steps on `continuum.pretrain_task` (k = 0: its random initialisation). The more
   steps, the more it knows of the sweep's task, which is in the pre-training mixture.
2. At each point, the probe on the sweep's training data (the paper's mean p, its Eq. 5, and the
   fraction of tokens above 0.55), then copies fine-tuned on that task with the same label noise
   (`continuum.sweep.noise`) under each of `continuum.objectives` (`auto` included) over
   `continuum.seeds`, evaluated on clean held-out prompts.
3. `crossover.md`, `crossover.csv`, `crossover.json` and `crossover.png`: accuracy per objective and
   point, and the accuracy difference of neg_p minus nll (mean and spread over seeds, paired by
   seed) against the base mean p, with the paper's twelve (backbone, domain) points on the same axes.

Runs inside one torchrun group; every run is resumable and a rerun skips the runs that finished.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List

import torch.distributed as dist
from omegaconf import DictConfig

from ...config import AUTO
from ...core.objectives import get_objective
from ...probe import ASSUMPTION_P, PAPER_POINTS
from ...run_folder import RunFolder
from ...utils.files import atomic_write, atomic_write_text
from .continuum import seed_runs, variant
from .trainer import probe_base, train

REFERENCE = "nll"  # the difference is taken against NLL
CONTENDER = "neg_p"


def base_model(cfg: DictConfig, out_dir: Path, steps: int) -> Dict:
    """The overrides that start fine-tuning from the base model pre-trained `steps` steps."""
    c = cfg.continuum
    if steps == 0:
        return {"model.pretrained_checkpoint": None}  # the random initialisation of each seed
    base_dir = out_dir / f"base{steps}"
    if not RunFolder(base_dir).finished():
        train(variant(cfg, base_dir, **{"data.task": c.pretrain_task, "data.noise": 0.0, "model.loss": "nll",
                                        "model.loss_args": {}, "trainer.max_steps": steps,
                                        "optim.lr": c.pretrain_lr}), base_dir)
    return {"model.pretrained_checkpoint": str(base_dir)}


def objective_label(name: str) -> str:
    return AUTO if name == AUTO else str(get_objective(name))


def run_sweep(cfg: DictConfig, out_dir: Path) -> List[dict]:
    s, c = cfg.continuum.sweep, cfg.continuum
    rows = []
    for steps in s.pretrain_steps:
        point_dir = out_dir / f"pretrain{steps}"
        common = {**base_model(cfg, out_dir, steps), "data.task": s.task, "data.noise": s.noise,
                  "trainer.max_steps": s.steps}
        stats, rec = probe_base(variant(cfg, point_dir, **common, **{"model.loss": "nll"}), point_dir)
        for name in c.objectives:
            summaries = seed_runs(cfg, point_dir, name, common)
            accuracies = [summary["accuracy"][s.task] for summary in summaries]
            chosen = [summary["auto"]["loss"] for summary in summaries if "auto" in summary]
            rows.append({"pretrain_steps": steps, "mean_p": stats.mean_p,
                         "fraction_above": stats.fraction_above[f"p>{ASSUMPTION_P}"], "placement": rec.placement,
                         "objective": objective_label(name), "name": name, "seeds": accuracies,
                         "mean": statistics.mean(accuracies),
                         "std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                         **({"auto_chose": chosen} if chosen else {})})
    if dist.get_rank() == 0:
        write_sweep(rows, cfg, out_dir)
    return rows


def differences(rows: List[dict], name: str, reference: str = REFERENCE) -> List[dict]:
    """Per point: accuracy of `name` minus `reference`, paired by seed (mean and std, in points)."""
    out = []
    for steps in dict.fromkeys(r["pretrain_steps"] for r in rows):
        at = {r["name"]: r for r in rows if r["pretrain_steps"] == steps}
        if name not in at or reference not in at:
            continue
        diffs = [100 * (a - b) for a, b in zip(at[name]["seeds"], at[reference]["seeds"])]
        out.append({"pretrain_steps": steps, "mean_p": at[name]["mean_p"], "mean": statistics.mean(diffs),
                    "std": statistics.stdev(diffs) if len(diffs) > 1 else 0.0})
    return out


def markdown_table(rows: List[dict], cfg: DictConfig) -> str:
    s = cfg.continuum.sweep
    names = list(dict.fromkeys(r["name"] for r in rows))
    labels = {r["name"]: r["objective"] for r in rows}
    lines = [f"Task {s.task} with {s.noise:.0%} label noise, {s.steps} fine-tuning steps, seeds "
             f"{', '.join(map(str, cfg.continuum.seeds))}; held-out exact match, mean ± std over seeds.", "",
             "| pre-training steps | base mean p | p > 0.55 | probe | " + " | ".join(labels[n] for n in names)
             + f" | {CONTENDER} - {REFERENCE} (points) |",
             "|---:|---:|---:|---|" + "---:|" * (len(names) + 1)]
    diffs = {d["pretrain_steps"]: d for d in differences(rows, CONTENDER)}
    for steps in dict.fromkeys(r["pretrain_steps"] for r in rows):
        at = {r["name"]: r for r in rows if r["pretrain_steps"] == steps}
        first = next(iter(at.values()))
        cells = []
        for n in names:
            cell = f"{100 * at[n]['mean']:.1f} ± {100 * at[n]['std']:.1f}"
            if at[n].get("auto_chose"):
                cell += f" ({', '.join(sorted(set(at[n]['auto_chose'])))})"
            cells.append(cell)
        d = diffs.get(steps)
        lines.append(f"| {steps} | {first['mean_p']:.3f} | {first['fraction_above']:.0%} | {first['placement']} | "
                     + " | ".join(cells) + (f" | {d['mean']:+.1f} ± {d['std']:.1f} |" if d else " | - |"))
    return "\n".join(lines) + "\n"


def write_sweep(rows: List[dict], cfg: DictConfig, out_dir: Path) -> None:
    table = markdown_table(rows, cfg)
    atomic_write_text(out_dir / "crossover.md", table)
    atomic_write_text(out_dir / "crossover.json", json.dumps(rows, indent=2) + "\n")

    def write_csv(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["pretrain_steps", "mean_p", "fraction_above_0.55", "placement", "objective", "mean",
                             "std", "seeds"])
            for r in rows:
                writer.writerow([r["pretrain_steps"], f"{r['mean_p']:.4f}", f"{r['fraction_above']:.4f}",
                                 r["placement"], r["objective"], f"{r['mean']:.4f}", f"{r['std']:.4f}",
                                 " ".join(f"{a:.4f}" for a in r["seeds"])])

    atomic_write(out_dir / "crossover.csv", write_csv)
    plot_sweep(rows, out_dir / "crossover.png")
    print(table, file=sys.stderr)


def plot_sweep(rows: List[dict], path: Path) -> None:
    # Figure and the Agg canvas directly: no pyplot, so the caller's backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(figure)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    names = list(dict.fromkeys(r["name"] for r in rows))  # one colour per objective in both panels
    for name in (n for n in names if n != REFERENCE):
        d = differences(rows, name)
        if d:
            style = {"color": f"C{names.index(name)}", "marker": "o", "capsize": 3,
                     "linestyle": "-" if name == CONTENDER else ":", "linewidth": 2 if name == CONTENDER else 1}
            left.errorbar([x["mean_p"] for x in d], [x["mean"] for x in d], yerr=[x["std"] for x in d],
                          label=f"ours: {objective_label(name)} - nll", **style)
    markers = {"math": "^", "medical": "s", "figfont": "v"}
    for domain, marker in markers.items():
        points = [p for p in PAPER_POINTS if p.domain == domain]
        left.scatter([p.mean_p for p in points], [p.difference for p in points], marker=marker, s=60,
                     facecolors="none", edgecolors="black", label=f"paper: {domain} (-p - -log p)")
    left.axhline(0, color="grey", linewidth=0.8)
    left.set_xlabel("base model's mean p on the training targets (the paper's Eq. 5)")
    left.set_ylabel("accuracy difference (points)")
    left.set_title("where the prior-leaning objective starts to win")
    left.legend(fontsize="x-small")
    left.grid(alpha=0.3)
    for name in names:
        sub = [r for r in rows if r["name"] == name]
        right.errorbar([r["mean_p"] for r in sub], [100 * r["mean"] for r in sub], yerr=[100 * r["std"] for r in sub],
                       marker="o", capsize=3, color=f"C{names.index(name)}", label=objective_label(name))
    right.set_xlabel("base model's mean p")
    right.set_ylabel("held-out exact match (%)")
    right.set_title("accuracy per objective (mean ± std over seeds)")
    right.legend(fontsize="x-small")
    right.grid(alpha=0.3)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
