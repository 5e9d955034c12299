"""Where a base model sits on the capability continuum, from its target probabilities, and what to train with.

The statistics are computed from the base model's probability p of each target token of the SFT
completions, before any training. Two of them carry the paper's names: the mean p over all target
tokens (its Eq. 5, Table 5) and the fraction of tokens with p > 0.55 (its Assumption 6.1 and
Table 6). The rule (`recommend`) reads both:

- model-strong: mean p >= STRONG_MEAN_P and at least STRONG_FRACTION of the tokens above p = 0.55.
  Recommend `neg_p`: the model already predicts most of the data, and weights w(p) = p spend the
  update on what it half-knows rather than on tokens it finds implausible.
- model-weak: mean p < WEAK_MEAN_P. Recommend `nll`: w(p) = p would silence almost every token, so
  learning stalls; NLL's weight 1 is what moves the model.
- in between, model-intermediate: `nll`, and the report says the expected difference is small.

The evidence for each cut-off (the paper's figures are in recipes/paper/published.yaml; the
project's CPU crossover sweep is in docs/crossover.md):

- STRONG_MEAN_P = 0.75 lies between the sweep's last point where NLL still wins (base mean p 0.735:
  neg_p 3 points behind) and the paper's lowest strong backbone (DeepSeekMath-7B on math, 0.76).
  On the paper's four strong backbones (0.76 to 0.81) -p or the threshold beat -log p by 4 to 16
  points; on its four intermediate ones (0.50 to 0.59) -log p led on three (by 0.1 to 1.7 points)
  and -p on one (by 0.3); the sweep's strongest point (0.84) has neg_p ahead.
- STRONG_FRACTION = 0.70 is Assumption 6.1's K (p of the target above 0.55 with probability at
  least 0.70), which the paper's strong backbones meet (72.8% to 81.2% of tokens in Table 6).
- WEAK_MEAN_P = 0.45 lies above every point where neg_p falls far behind (the paper's figfont
  backbones, 0.01 to 0.07, where -p learnt nothing; the sweep's points up to 0.36, where neg_p
  trails by 18 points or more) and below the paper's intermediate backbones (0.50 and up). Both
  sides recommend nll; the placement says how much is at stake.

They are a starting point to check on one's own data, not a law: when the probe says
"intermediate", run both objectives on a small budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import numpy
import torch

STRONG_MEAN_P = 0.75
ASSUMPTION_P = 0.55  # Assumption 6.1: p of the target above 0.55 ...
STRONG_FRACTION = 0.70  # ... with probability K >= 0.70
WEAK_MEAN_P = 0.45
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
# The thresholds of the paper's quantile ablation are these percentiles of p (`reproduce quantiles`).
PERCENTILES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)
THRESHOLDS = (0.1, 0.5, ASSUMPTION_P, 0.9)
HIST_BINS = 20


@dataclass(frozen=True)
class PaperPoint:
    """One (backbone, domain) of the paper: its base model's mean p on the training set (Table 5),
    the share of tokens above 0.55 where printed (Table 6), and -p's accuracy minus -log p's in
    points (Tables 1-3: the averages; figfont by exact match)."""

    backbone: str
    domain: str
    mean_p: float
    fraction_above: Optional[float]
    difference: float

    @property
    def placement(self) -> str:  # as the paper places it
        return {"math": "strong", "medical": "intermediate", "figfont": "weak"}[self.domain]


PAPER_POINTS = (
    PaperPoint("LLaMA-3.1-8B", "math", 0.80, 0.728, 10.56 - 6.49),
    PaperPoint("DeepSeekMath-7B", "math", 0.76, 0.767, 19.11 - 11.10),
    PaperPoint("Qwen2.5-Math-1.5B", "math", 0.80, 0.806, 32.75 - 17.00),
    PaperPoint("Qwen2.5-Math-7B", "math", 0.81, 0.812, 36.51 - 22.67),
    PaperPoint("LLaMA-3.2-3B", "medical", 0.50, None, 36.29 - 37.99),
    PaperPoint("LLaMA-3.1-8B", "medical", 0.53, None, 45.89 - 47.23),
    PaperPoint("Qwen2.5-1.5B", "medical", 0.56, None, 35.02 - 35.13),
    PaperPoint("Qwen2.5-Math-7B", "medical", 0.59, None, 33.83 - 33.56),
    PaperPoint("LLaMA-3.2-3B", "figfont", 0.01, None, 0.00 - 1.08),
    PaperPoint("LLaMA-3.1-8B", "figfont", 0.01, None, 0.00 - 1.34),
    PaperPoint("Qwen2.5-1.5B", "figfont", 0.01, None, 0.00 - 0.60),
    PaperPoint("Qwen2.5-7B", "figfont", 0.07, None, 0.00 - 35.20),
)


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
    above = stats.fraction_above[f"p>{ASSUMPTION_P}"]
    if stats.mean_p >= STRONG_MEAN_P and above >= STRONG_FRACTION:
        return Recommendation(
            "strong", "neg_p", {},
            f"mean p {stats.mean_p:.2f} >= {STRONG_MEAN_P} and {above:.0%} of tokens above p={ASSUMPTION_P} "
            f"(>= {STRONG_FRACTION:.0%}): the model already knows this data, as the paper's math backbones "
            "(mean p 0.76-0.81), where -p beat -log p by 4 to 16 points",
        )
    if stats.mean_p < WEAK_MEAN_P:
        return Recommendation(
            "weak", "nll", {},
            f"mean p {stats.mean_p:.2f} < {WEAK_MEAN_P}: the model knows little of this data, as the paper's "
            "figfont backbones (mean p 0.01-0.07), where -log p won and -p learnt nothing",
        )
    return Recommendation(
        "intermediate", "nll", {},
        f"mean p {stats.mean_p:.2f} and {above:.0%} of tokens above p={ASSUMPTION_P}: between the ends, as the "
        "paper's medical backbones (mean p 0.50-0.59), where the expected difference is small (-log p led on "
        "three of four by 0.1 to 1.7 points, -p on one by 0.3): nll, slightly favoured; model.loss=neg_p is "
        "worth a run on a small budget",
    )


@dataclass
class AutoChoice:
    """What `model.loss=auto` chose at a run's start, and the statistics it chose from."""

    loss: str
    loss_args: Dict[str, object]
    placement: str
    reason: str
    batches: int
    num_tokens: int
    mean_p: float
    fraction_above_055: float

    @property
    def objective(self):
        from .core.objectives import get_objective

        return get_objective(self.loss, **self.loss_args)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"model.loss=auto: mean p {self.mean_p:.3f} (Eq. 5), {self.fraction_above_055:.0%} of tokens above "
                f"p={ASSUMPTION_P}, over {self.num_tokens} completion tokens of the first {self.batches} training "
                f"batches: {self.placement} end -> "
                f"{Recommendation(self.placement, self.loss, self.loss_args, '').overrides()}")


def auto_choice(values: torch.Tensor, batches: int) -> AutoChoice:
    """The `model.loss=auto` decision from the initial model's p of the first training batches."""
    stats = probability_stats(values)
    rec = recommend(stats)
    return AutoChoice(rec.loss, dict(rec.loss_args), rec.placement, rec.reason, batches, stats.num_tokens,
                      stats.mean_p, stats.fraction_above[f"p>{ASSUMPTION_P}"])


def decide_auto(run_dir, batches: int, measure, *, started: bool, writer: bool):
    """`model.loss=auto` at a run's start, for either engine: the choice recorded in `run_dir` (a
    resumed run keeps it and never measures again), else the rule on `measure()` (p of the first
    `batches` training batches), written to auto.json and printed by the `writer` rank. A run that
    `started` (holds a checkpoint) without a recorded choice is refused. Returns (choice, new)."""
    import json
    import sys

    from .run_folder import RunFolder
    from .utils.files import atomic_write_text

    path = RunFolder(run_dir).auto
    if path.is_file():
        return read_auto_choice(run_dir), False
    if started:
        raise ValueError(f"{run_dir} holds a checkpoint but no {path.name}: the model.loss=auto choice of this "
                         "run is lost; start a new run folder")
    choice = auto_choice(measure(), batches=batches)
    if writer:
        atomic_write_text(path, json.dumps(choice.to_dict(), indent=2) + "\n")
        print(choice.describe(), file=sys.stderr, flush=True)
    return choice, True


def read_auto_choice(run_dir) -> AutoChoice:
    """The choice a `model.loss=auto` run recorded in its folder; a one-line error when there is none."""
    import json

    from .run_folder import RunFolder

    path = RunFolder(run_dir).auto
    try:
        return AutoChoice(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise FileNotFoundError(f"no {path.name} in {run_dir}: a model.loss=auto run records its choice there "
                                "when it starts; train first") from None
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"{path} does not hold a model.loss=auto choice ({err})") from None


def format_report(stats: ProbabilityStats, rec: Recommendation) -> str:
    q = stats.quantiles
    f = stats.fraction_above
    return "\n".join([
        f"completion tokens probed: {stats.num_tokens}",
        f"mean p {stats.mean_p:.4f} (the paper's Eq. 5)   mean log p {stats.mean_log_p:.4f}",
        f"fraction of tokens above p={ASSUMPTION_P} (the paper's Assumption 6.1): {f[f'p>{ASSUMPTION_P}']:.1%}",
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

    from .run_folder import RunFolder
    from .utils.files import atomic_write_text

    folder = RunFolder(run_dir)
    stats = probability_stats(values)
    rec = recommend(stats)
    report = {"stats": stats.to_dict(), "recommendation": {"placement": rec.placement, "loss": rec.loss,
              "loss_args": rec.loss_args, "reason": rec.reason}}
    atomic_write_text(folder.probe, json.dumps(report, indent=2) + "\n")
    plot_histogram(stats, folder.probe_plot, title)
    print(format_report(stats, rec), file=sys.stderr)
    return stats, rec
