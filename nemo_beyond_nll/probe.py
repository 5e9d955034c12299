"""Where a base model sits on the capability continuum, from its target probabilities, and what to train with.

The statistics are computed from the base model's probability p of each target token of the SFT
completions, before any training. The rule (`recommend`) reads two of them:

- mean p >= STRONG_MEAN_P and at least STRONG_FRACTION_ABOVE_HALF of the tokens above p = 0.5:
  the model-strong end. The model already predicts most of the data; prior-leaning objectives
  (weight w(p) = p) spend the update on what the model half-knows and give little weight to
  tokens the model finds implausible, which at this end are mostly noise. Recommend `neg_p`.
- mean p <= WEAK_MEAN_P: the model-weak end. w(p) = p would silence almost every token (a random
  model has p ~ 1/V), so learning stalls; NLL's weight 1 is what moves the model. Recommend `nll`.
- in between: no objective wins everywhere (the paper's medical domain); recommend `nll` as the
  safe default and say that `neg_p` is worth a run.

Where the cut-offs come from: the paper places math for Qwen2.5-Math/Llama-3.1 at the strong end
and figfont puzzles at the weak end; the base-model statistics of this project's CPU continuum
experiment (README, "The capability continuum") put its strong end at mean p 0.67 (68% of tokens
above 0.5) and its weak end at 0.10 (9%), and the cut-offs sit between those ends with margin.
They are a starting point to check on one's own data, not a law: run both objectives on a small budget when the probe says "intermediate".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List

import numpy
import torch

STRONG_MEAN_P = 0.5
STRONG_FRACTION_ABOVE_HALF = 0.5
WEAK_MEAN_P = 0.2
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
# The thresholds of the paper's quantile ablation are these percentiles of p (`reproduce quantiles`).
PERCENTILES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)
THRESHOLDS = (0.1, 0.5, 0.9)
HIST_BINS = 20


@dataclass
class ProbabilityStats:
    num_tokens: int
    mean_p: float
    mean_log_p: float
    quantiles: Dict[str, float]
    fraction_above: Dict[str, float]
    percentiles: Dict[str, float] = field(default_factory=dict)  # "5": 5th percentile of p, ... (PERCENTILES)
    histogram: List[int] = field(default_factory=list)  # HIST_BINS equal bins over [0, 1]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Recommendation:
    placement: str  # strong | intermediate | weak
    loss: str
    loss_args: Dict[str, object]
    reason: str

    def overrides(self) -> str:
        args = " ".join(f"model.loss_args.{k}={v}" for k, v in self.loss_args.items())
        return f"model.loss={self.loss}" + (f" {args}" if args else "")


def probability_histogram(prob: torch.Tensor, bins: int = HIST_BINS) -> List[int]:
    """Counts of the probabilities in `bins` equal bins over [0, 1] (every run's and probe's histogram)."""
    values = prob.detach().double().flatten().clamp(0.0, 1.0)
    return torch.histc(values, bins=bins, min=0.0, max=1.0).round().long().tolist()


def histogram_edges(bins: int = HIST_BINS) -> torch.Tensor:
    """The `bins + 1` edges of :func:`probability_histogram`'s bins."""
    return torch.linspace(0.0, 1.0, bins + 1)


def probability_stats(prob: torch.Tensor) -> ProbabilityStats:
    """Statistics of a 1-D tensor of target probabilities (the completion tokens only)."""
    p = prob.detach().double().flatten()
    if p.numel() == 0:
        raise ValueError("no completion tokens to probe: check the data's loss mask")
    if bool(((p < 0) | (p > 1)).any()):
        raise ValueError("probabilities must lie in [0, 1]")
    log_p = torch.log(p.clamp(min=torch.finfo(torch.float64).tiny))
    # numpy's quantile (linear interpolation, as torch's) has no limit on the number of tokens
    values = p.cpu().numpy()
    qs = numpy.quantile(values, QUANTILES)
    ps = numpy.quantile(values, [q / 100 for q in PERCENTILES])
    return ProbabilityStats(
        num_tokens=p.numel(),
        mean_p=float(p.mean()),
        mean_log_p=float(log_p.mean()),
        quantiles={f"q{int(q * 100):02d}": float(v) for q, v in zip(QUANTILES, qs)},
        fraction_above={f"p>{t}": float((p > t).double().mean()) for t in THRESHOLDS},
        percentiles={str(q): float(v) for q, v in zip(PERCENTILES, ps)},
        histogram=probability_histogram(p),
    )


def recommend(stats: ProbabilityStats) -> Recommendation:
    """The documented rule above, applied to `stats`."""
    above_half = stats.fraction_above["p>0.5"]
    if stats.mean_p >= STRONG_MEAN_P and above_half >= STRONG_FRACTION_ABOVE_HALF:
        return Recommendation(
            "strong", "neg_p", {},
            f"mean p {stats.mean_p:.2f} >= {STRONG_MEAN_P} and {above_half:.0%} of tokens above p=0.5: "
            "the model already knows this data; a prior-leaning objective down-weights the tokens it finds "
            "implausible",
        )
    if stats.mean_p <= WEAK_MEAN_P:
        return Recommendation(
            "weak", "nll", {},
            f"mean p {stats.mean_p:.2f} <= {WEAK_MEAN_P}: the model knows little of this data; weights "
            "w(p) = p would silence most tokens, NLL learns",
        )
    return Recommendation(
        "intermediate", "nll", {},
        f"mean p {stats.mean_p:.2f} lies between {WEAK_MEAN_P} and {STRONG_MEAN_P} (or few tokens are above "
        "p=0.5): no objective wins everywhere here; keep nll and try model.loss=neg_p on a small budget",
    )


def format_report(stats: ProbabilityStats, rec: Recommendation) -> str:
    q = stats.quantiles
    f = stats.fraction_above
    return "\n".join([
        f"completion tokens probed: {stats.num_tokens}",
        f"mean p {stats.mean_p:.4f}   mean log p {stats.mean_log_p:.4f}",
        "quantiles of p: " + "  ".join(f"{k} {v:.4f}" for k, v in q.items()),
        "fraction of tokens: " + "  ".join(f"{k} {v:.1%}" for k, v in f.items()),
        "percentiles of p: " + "  ".join(f"{k}% {v:.4g}" for k, v in stats.percentiles.items()),
        f"placement: {rec.placement} end of the continuum",
        f"recommended: {rec.overrides()}",
        f"why: {rec.reason}",
    ])


def plot_histogram(stats: ProbabilityStats, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .utils.files import atomic_write

    fig, ax = plt.subplots(figsize=(6, 3.5))
    total = max(sum(stats.histogram), 1)
    ax.bar([i / HIST_BINS for i in range(HIST_BINS)], [c / total for c in stats.histogram],
           width=1 / HIST_BINS, align="edge", color="tab:blue")
    ax.axvline(stats.mean_p, color="tab:red", linestyle="--", label=f"mean p = {stats.mean_p:.2f}")
    ax.set_xlabel("base-model probability p of the target token")
    ax.set_ylabel("fraction of completion tokens")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def write_probe_report(values: torch.Tensor, run_dir, title: str):
    """Statistics and recommendation for `values`; writes probe.json and probe.png; prints the report."""
    import json
    import sys
    from pathlib import Path

    from .utils.files import atomic_write_text

    stats = probability_stats(values)
    rec = recommend(stats)
    report = {"stats": stats.to_dict(), "recommendation": {"placement": rec.placement, "loss": rec.loss,
              "loss_args": rec.loss_args, "reason": rec.reason}}
    atomic_write_text(Path(run_dir) / "probe.json", json.dumps(report, indent=2) + "\n")
    plot_histogram(stats, Path(run_dir) / "probe.png", title)
    print(format_report(stats, rec), file=sys.stderr)
    return stats, rec
