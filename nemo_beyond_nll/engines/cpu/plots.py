"""The training plot: loss and mean target probability per step, and the p histogram at start and end."""

from __future__ import annotations

from pathlib import Path

from ...utils.files import atomic_write
from ...probe import HIST_BINS


def plot_training(train_records: list, hist_records: list, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_hist) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in train_records]
    ax_loss.plot(steps, [r["loss"] for r in train_records], color="tab:blue", label="loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss (mean over kept tokens)", color="tab:blue")
    ax_p = ax_loss.twinx()
    ax_p.plot(steps, [r["target_prob"] for r in train_records], color="tab:orange", label="mean p")
    ax_p.set_ylabel("mean target probability", color="tab:orange")
    ax_p.set_ylim(0, 1)
    ax_loss.set_title(title)

    edges = [i / HIST_BINS for i in range(HIST_BINS)]
    width = 1.0 / HIST_BINS
    if hist_records:
        for record, color in ((hist_records[0], "tab:gray"), (hist_records[-1], "tab:green")):
            total = max(sum(record["counts"]), 1)
            ax_hist.bar(edges, [c / total for c in record["counts"]], width=width, align="edge",
                        alpha=0.6, color=color, label=f"step {record['step']}")
        ax_hist.legend()
    ax_hist.set_xlabel("target probability p (validation completion tokens)")
    ax_hist.set_ylabel("fraction of tokens")
    ax_hist.set_title("where the model sits: p at start and end")
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
