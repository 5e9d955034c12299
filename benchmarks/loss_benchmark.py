"""Fwd+bwd time and peak memory of the loss over [N, V] logits, against Megatron and the paper.

Compares, in one process and on the same inputs:
  megatron  Megatron-Core's vocab_parallel_cross_entropy (nll only; the reference for ratios);
  paper     the paper's formulation: fp32 log_softmax over the whole vocabulary, gather, f(p), autograd;
  ours      nemo_beyond_nll.vocab_parallel_objective, for every objective.

Memory is the loss's peak: the logits plus the extra memory at the high-water mark of one fwd+bwd
(VmHWM after resetting it, minus VmRSS before, on CPU; torch.cuda.max_memory_allocated on CUDA).

    python benchmarks/loss_benchmark.py                       # N=8192, V=32768, fp32 and bf16
    python benchmarks/loss_benchmark.py --tokens 1024 --vocab 4096 --repeats 2   # quick
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from nemo_beyond_nll import FAMILIES, get_objective, vocab_parallel_objective

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# One representative per family; thresholds at p >= 1e-5 keep about half the tokens of these logits.
OBJECTIVES = ["nll", "neg_p", "neg_p_power", "neg_p_threshold", "nll_threshold", "dft"]
OBJECTIVE_ARGS = {"neg_p_threshold": {"threshold": 1e-5}, "nll_threshold": {"threshold": 1e-5}}


def paper_loss(logits, target, objective):
    """The paper's code path: fp32 log-probabilities of the whole vocabulary, then f(p) by autograd."""
    logprob = torch.log_softmax(logits.float(), dim=-1).gather(-1, target[:, None]).squeeze(-1)
    prob = logprob.exp()
    if objective.name in ("nll", "nll_threshold"):
        loss = -logprob
    elif objective.name == "neg_p_power":
        loss = (1 - prob**objective.alpha) / objective.alpha
    elif objective.name == "dft":
        loss = -prob.detach() * logprob
    else:
        loss = 1 - prob
    mask = objective.keep_mask(prob.detach())
    return loss if mask is None else loss * mask


class PeakMemory:
    """Extra memory at the high-water mark of a region: CUDA allocator stats, or Linux VmHWM."""

    def __init__(self, device):
        self.device = device

    @staticmethod
    def _status(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current resident size
            self.start = self._status("VmRSS:")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self.peak = self._status("VmHWM:") - self.start


def time_case(fn, base, target, upstream, repeats, device):
    """Median fwd+bwd seconds and peak extra bytes; fresh logits each repeat (backward may overwrite them)."""
    times, peaks = [], []
    for _ in range(repeats + 1):  # the first run warms up
        leaf = base.clone().requires_grad_()
        logits = leaf.view_as(leaf)  # a non-leaf, as a model's logits are
        if device.type == "cuda":
            torch.cuda.synchronize()
        with PeakMemory(device) as mem:
            start = time.perf_counter()
            loss = fn(logits, target)
            (loss * upstream).sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
        times.append(elapsed)
        peaks.append(mem.peak)
        del leaf, logits, loss
    return statistics.median(times[1:]), max(peaks[1:])


def megatron_cross_entropy():
    """Megatron-Core's vocab_parallel_cross_entropy at TP=1, or None where megatron-core is absent."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

            from nemo_beyond_nll.megatron.cpu import init_megatron_cpu
            init_megatron_cpu(tensor_parallel=1)
    except ImportError:
        return None
    return vocab_parallel_cross_entropy


def run(args):
    device = torch.device(args.device)
    megatron_ce = megatron_cross_entropy()
    rows = []
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        g = torch.Generator().manual_seed(0)
        base = (torch.randn(args.tokens, args.vocab, generator=g) * 2).to(device=device, dtype=dtype)
        target = torch.randint(0, args.vocab, (args.tokens,), generator=g).to(device)
        upstream = torch.rand(args.tokens, generator=g).to(device) / args.tokens

        cases = []
        if megatron_ce is not None:
            cases.append(("megatron", "nll", lambda x, t: megatron_ce(x, t)))
        for name in args.objectives:
            objective = get_objective(name, **OBJECTIVE_ARGS.get(name, {}))
            cases.append(("paper", name, lambda x, t, o=objective: paper_loss(x, t, o)))
            cases.append(("ours", name, lambda x, t, o=objective: vocab_parallel_objective(x, t, o).loss))
        for method, name, fn in cases:
            seconds, peak = time_case(fn, base, target, upstream, args.repeats, device)
            logits_mib = base.numel() * base.element_size() / 2**20
            rows.append({"dtype": dtype_name, "method": method, "objective": name, "ms": seconds * 1e3,
                         "extra_mib": peak / 2**20, "peak_mib": logits_mib + peak / 2**20})
            print(f"  {dtype_name} {method:8s} {name:16s} {seconds * 1e3:9.1f} ms {peak / 2**20:9.1f} MiB",
                  file=sys.stderr, flush=True)
        del base
    add_ratios(rows)
    return rows


def add_ratios(rows):
    """Time and memory as ratios to Megatron's cross entropy (same dtype), and ours to the paper's."""
    for row in rows:
        mega = next((r for r in rows if r["dtype"] == row["dtype"] and r["method"] == "megatron"), None)
        paper = next((r for r in rows if r["dtype"] == row["dtype"] and r["method"] == "paper"
                      and r["objective"] == row["objective"]), None)
        row["time_vs_megatron"] = row["ms"] / mega["ms"] if mega else float("nan")
        row["mem_vs_megatron"] = row["peak_mib"] / mega["peak_mib"] if mega else float("nan")
        row["speedup_vs_paper"] = paper["ms"] / row["ms"] if paper else float("nan")
        row["mem_saving_vs_paper"] = paper["peak_mib"] / row["peak_mib"] if paper else float("nan")


def markdown(rows, title):
    lines = [title, "",
             "| dtype | method | objective | fwd+bwd ms | extra MiB | peak MiB (logits + extra) | time / Megatron "
             "| memory / Megatron | paper / ours (time) | paper / ours (memory) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        paper_cols = (f"{r['speedup_vs_paper']:.2f}x | {r['mem_saving_vs_paper']:.2f}x"
                      if r["method"] == "ours" else "|")
        lines.append(f"| {r['dtype']} | {r['method']} | {r['objective']} | {r['ms']:.0f} | {r['extra_mib']:.0f} "
                     f"| {r['peak_mib']:.0f} "
                     f"| {r['time_vs_megatron']:.2f} | {r['mem_vs_megatron']:.2f} | {paper_cols} |")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    fig, axes = plt.subplots(2, len(dtypes), figsize=(6 * len(dtypes), 7), squeeze=False)
    for col, dtype in enumerate(dtypes):
        sub = [r for r in rows if r["dtype"] == dtype]
        labels = [f"{r['method']}\n{r['objective']}" for r in sub]
        colors = [{"megatron": "tab:gray", "paper": "tab:orange", "ours": "tab:green"}[r["method"]] for r in sub]
        for row_i, (key, unit) in enumerate((("ms", "fwd+bwd ms"), ("peak_mib", "peak MiB (logits + extra)"))):
            ax = axes[row_i][col]
            ax.bar(range(len(sub)), [r[key] for r in sub], color=colors)
            ax.set_xticks(range(len(sub)), labels, rotation=90, fontsize=7)
            ax.set_ylabel(unit)
            ax.set_title(f"{dtype}: {unit}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--vocab", type=int, default=32768, help="vocabulary per rank")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--objectives", nargs="+", default=OBJECTIVES, choices=list(FAMILIES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)

    rows = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"loss_{args.device}_N{args.tokens}_V{args.vocab}"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    threads = torch.get_num_threads()
    title = (f"N={args.tokens}, V={args.vocab}, TP=1, {args.device} ({threads} threads, {os.cpu_count()} cores), "
             f"torch {torch.__version__}, median of {args.repeats}")
    print(markdown(rows, title))
    try:
        plot(rows, stem.with_suffix(".png"))
    except ImportError:
        print("matplotlib not installed: no chart", file=sys.stderr)
    print(f"\nwrote {stem}.csv and {stem}.png", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
