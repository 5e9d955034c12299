"""Fwd+bwd time and peak memory of the loss over [N, V] logits, against Megatron and the paper.

Compares, in one process and on the same inputs:
  megatron        Megatron-Core's vocab_parallel_cross_entropy (nll only; the reference for ratios);
  megatron_fused  Megatron-Core's fused_vocab_parallel_cross_entropy (nll only);
  liger           Liger-Kernel's cross entropy (nll only; CUDA, when liger_kernel imports);
  torch           torch.nn.functional.cross_entropy (nll only);
  torch_compile   the same under torch.compile (nll only);
  paper           the paper's formulation: fp32 log_softmax over the whole vocabulary, gather, f(p), autograd;
  ours            nemo_beyond_nll.vocab_parallel_objective (torch backend), for every objective;
  ours_triton     the same with the Triton backend (CUDA; or --triton on CPU under TRITON_INTERPRET=1).
The fused output layer (hidden states and weight in, no logits) has its own script,
fused_linear_benchmark.py, since its inputs differ.

Memory is the loss's peak: the logits plus the extra memory at the high-water mark of one fwd+bwd
(VmHWM after resetting it, minus VmRSS before, on CPU; torch.cuda.max_memory_allocated on CUDA).

    python benchmarks/loss_benchmark.py                       # N=8192, V=32768, fp32 and bf16
    python benchmarks/loss_benchmark.py --tokens 1024 --vocab 4096 --repeats 2   # quick
    python benchmarks/loss_benchmark.py --grid          # N in {4096, 16384} x V in {32768, 131072, 151936}

On CUDA it also prints the achieved bandwidth: the two-pass floor moves 3 logits-sized tensors
(read in forward, read in backward, gradient written), against --peak-gbps (H200: 4800). For the
baselines, which move more, it is the effective bandwidth at that floor.

The comparisons (--compare) are optional: one whose library is missing, or that fails, is skipped and
its reason is printed under the table; the rest still run.
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
    """The paper's code path: fp32 log-probabilities of the whole vocabulary, then f(p) by autograd.

    The speed baseline, timed as users run it; the tests' exact ground truth is tests/reference.py."""
    logprob = torch.log_softmax(logits.float(), dim=-1).gather(-1, target[:, None]).squeeze(-1)
    prob = logprob.exp()
    if objective.name in ("nll", "nll_threshold"):
        loss = -logprob
    elif objective.name == "neg_p_power":
        loss = (1 - prob**objective.alpha) / objective.alpha
    elif objective.name == "dft":
        loss = -prob.detach() * logprob
    elif objective.name in ("log_one_minus_p", "log_one_minus_p_threshold"):
        loss = torch.log(1 - prob + objective.offset)
    elif objective.name == "adaptive_power":
        power = prob.detach().mean().clamp(objective.min_power, 1.0)  # every benchmark target is supervised
        loss = (1 - prob**power) / power
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


def megatron_cross_entropies(device) -> dict:
    """Megatron-Core's unfused and fused cross entropy at TP=1 ({} where megatron-core is absent)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from megatron.core import parallel_state
            from megatron.core.fusions.fused_cross_entropy import fused_vocab_parallel_cross_entropy
            from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

            if device.type == "cuda":
                import torch.distributed as dist

                if not dist.is_initialized():
                    dist.init_process_group("nccl", init_method="tcp://127.0.0.1:29517", rank=0, world_size=1)
                parallel_state.initialize_model_parallel(1)
            else:
                from nemo_beyond_nll.engines.cpu.runtime import init_megatron_cpu

                init_megatron_cpu(tensor_parallel=1)
    except ImportError:
        return {}
    group = parallel_state.get_tensor_model_parallel_group()
    return {
        "megatron": lambda x, t: vocab_parallel_cross_entropy(x, t),
        # the fused version wants [s, b, V] logits and [s, b] targets
        "megatron_fused": lambda x, t: fused_vocab_parallel_cross_entropy(x[:, None], t[:, None], group)[:, 0],
    }


def torch_cross_entropy(x, t):
    return torch.nn.functional.cross_entropy(x, t, reduction="none")


def liger_cross_entropies(device) -> dict:
    """Liger-Kernel's cross entropy, per token (its Triton kernel writes the gradient during forward)."""
    if device.type != "cuda":
        raise RuntimeError("its kernels need CUDA")
    from liger_kernel.transformers.functional import liger_cross_entropy

    return {"liger": lambda x, t: liger_cross_entropy(x, t, reduction="none")}


COMPARISONS = {
    "megatron": megatron_cross_entropies,  # gives megatron and megatron_fused together
    "liger": liger_cross_entropies,
    "torch": lambda device: {"torch": torch_cross_entropy},
    "torch_compile": lambda device: {"torch_compile": torch.compile(torch_cross_entropy)},
}
COMPARE = ["megatron", "megatron_fused", "liger", "torch", "torch_compile"]


def comparisons(device, names) -> tuple[dict, dict]:
    """The cross entropies to compare against: ({method: fn}, {method: why it is skipped})."""
    found, skipped = {}, {}
    for source, make in COMPARISONS.items():
        wanted = [n for n in names if n == source or (source == "megatron" and n == "megatron_fused")]
        if not wanted:
            continue
        try:
            fns = make(device)
            if not fns:
                raise ImportError("megatron-core is not installed")
        except Exception as e:  # a missing library, no CUDA, a failed set-up: recorded, the rest run
            skipped.update({n: f"{type(e).__name__}: {e}" for n in wanted})
            continue
        found.update({n: fn for n, fn in fns.items() if n in wanted})
    return found, skipped


def run(args, on_rows=None):
    """All cases of all shapes; `on_rows(rows, skipped)` after each case (partial results survive a kill)."""
    device = torch.device(args.device)
    references, skipped = comparisons(device, args.compare)
    triton = args.triton or device.type == "cuda"
    rows = []

    def measured(row):
        rows.append(row)
        add_ratios(rows)
        if on_rows:
            on_rows(rows, skipped)

    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        for tokens in args.tokens:
            for vocab in args.vocab:
                run_shape(args, device, dtype_name, dtype, tokens, vocab, references, triton, skipped, measured)
    return rows, skipped


def run_shape(args, device, dtype_name, dtype, tokens, vocab, references, triton, skipped, measured):
    g = torch.Generator().manual_seed(0)
    base = (torch.randn(tokens, vocab, generator=g) * 2).to(device=device, dtype=dtype)
    target = torch.randint(0, vocab, (tokens,), generator=g).to(device)
    upstream = torch.rand(tokens, generator=g).to(device) / tokens

    cases = [(method, "nll", fn) for method, fn in references.items()]
    for name in args.objectives:
        objective = get_objective(name, **OBJECTIVE_ARGS.get(name, {}))
        cases.append(("paper", name, lambda x, t, o=objective: paper_loss(x, t, o)))
        cases.append(("ours", name, lambda x, t, o=objective: vocab_parallel_objective(x, t, o, backend="torch").loss))
        if triton:
            cases.append(("ours_triton", name,
                          lambda x, t, o=objective: vocab_parallel_objective(x, t, o, backend="triton").loss))
    cases.sort(key=lambda case: case[0] == "torch_compile")  # its compilation last: the rest first
    logits_bytes = base.numel() * base.element_size()
    for method, name, fn in cases:
        try:
            seconds, peak = time_case(fn, base, target, upstream, args.repeats, device)
        except Exception as e:  # one failing comparison must not cost the others
            skipped[method if method not in ("ours", "ours_triton", "paper") else f"{method} {name}"] = (
                f"failed at {dtype_name} N={tokens} V={vocab}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            print(f"  {method} {name} failed: {e}", file=sys.stderr, flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        row = {"dtype": dtype_name, "tokens": tokens, "vocab": vocab, "method": method, "objective": name,
               "ms": seconds * 1e3, "extra_mib": peak / 2**20, "peak_mib": (logits_bytes + peak) / 2**20}
        if device.type == "cuda":  # the two-pass floor: read, read, write one logits-sized tensor each
            row["gbps"] = 3 * logits_bytes / seconds / 1e9
            row["of_peak"] = row["gbps"] / args.peak_gbps
        measured(row)
        print(f"  {dtype_name} N={tokens} V={vocab} {method:14s} {name:16s} {seconds * 1e3:9.1f} ms "
              f"{peak / 2**20:9.1f} MiB", file=sys.stderr, flush=True)


def add_ratios(rows):
    """Time and memory as ratios to Megatron's cross entropy (same dtype), and ours to the paper's."""
    def same_shape(a, b):
        return (a["dtype"], a["tokens"], a["vocab"]) == (b["dtype"], b["tokens"], b["vocab"])

    for row in rows:
        mega = next((r for r in rows if same_shape(r, row) and r["method"] == "megatron"), None)
        paper = next((r for r in rows if same_shape(r, row) and r["method"] == "paper"
                      and r["objective"] == row["objective"]), None)
        row["time_vs_megatron"] = row["ms"] / mega["ms"] if mega else float("nan")
        row["mem_vs_megatron"] = row["peak_mib"] / mega["peak_mib"] if mega else float("nan")
        row["speedup_vs_paper"] = paper["ms"] / row["ms"] if paper else float("nan")
        row["mem_saving_vs_paper"] = paper["peak_mib"] / row["peak_mib"] if paper else float("nan")


def markdown(rows, title, skipped=None):
    cuda = bool(rows) and "gbps" in rows[0]
    lines = [title, "",
             "| dtype | N | V | method | objective | fwd+bwd ms | extra MiB | peak MiB (logits + extra) "
             "| time / Megatron | memory / Megatron | paper / ours (time) | paper / ours (memory) |"
             + (" GB/s | of peak |" if cuda else ""),
             "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if cuda else "")]
    for r in rows:
        paper_cols = (f"{r['speedup_vs_paper']:.2f}x | {r['mem_saving_vs_paper']:.2f}x"
                      if r["method"].startswith("ours") else "|")
        bandwidth = f" {r['gbps']:.0f} | {r['of_peak']:.0%} |" if cuda else ""
        lines.append(f"| {r['dtype']} | {r['tokens']} | {r['vocab']} | {r['method']} | {r['objective']} "
                     f"| {r['ms']:.1f} | {r['extra_mib']:.0f} | {r['peak_mib']:.0f} "
                     f"| {r['time_vs_megatron']:.2f} | {r['mem_vs_megatron']:.2f} | {paper_cols} |" + bandwidth)
    if skipped:
        lines += ["", "Skipped:"] + [f"- {method}: {why}" for method, why in skipped.items()]
    return "\n".join(lines)


COLORS = {"megatron": "tab:gray", "megatron_fused": "tab:blue", "paper": "tab:orange", "ours": "tab:green",
          "ours_triton": "tab:olive", "liger": "tab:purple", "torch": "tab:brown", "torch_compile": "tab:pink"}


def plot(rows, path):
    """Time and peak memory of every case, one column of panels per (dtype, shape)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["dtype"], r["tokens"], r["vocab"]) for r in rows))
    fig, axes = plt.subplots(2, len(panels), figsize=(6 * len(panels), 7), squeeze=False)
    for col, key in enumerate(panels):
        sub = [r for r in rows if (r["dtype"], r["tokens"], r["vocab"]) == key]
        labels = [f"{r['method']}\n{r['objective']}" for r in sub]
        for row_i, (field, unit) in enumerate((("ms", "fwd+bwd ms"), ("peak_mib", "peak MiB (logits + extra)"))):
            ax = axes[row_i][col]
            ax.bar(range(len(sub)), [r[field] for r in sub], color=[COLORS[r["method"]] for r in sub])
            ax.set_xticks(range(len(sub)), labels, rotation=90, fontsize=7)
            ax.set_ylabel(unit)
            ax.set_title(f"{key[0]} N={key[1]} V={key[2]}: {unit}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[8192])
    parser.add_argument("--vocab", type=int, nargs="+", default=[32768], help="vocabulary per rank")
    parser.add_argument("--grid", action="store_true", help="N in {4096, 16384} x V in {32768, 131072, 151936}")
    parser.add_argument("--triton", action="store_true", help="also time the Triton backend off CUDA")
    parser.add_argument("--peak-gbps", type=float, default=4800.0, help="device memory bandwidth (H200: 4800)")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--objectives", nargs="+", default=OBJECTIVES, choices=list(FAMILIES))
    parser.add_argument("--compare", nargs="*", default=COMPARE, choices=COMPARE, help="cross entropies to compare")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.grid:
        args.tokens, args.vocab = [4096, 16384], [32768, 131072, 151936]

    args.out.mkdir(parents=True, exist_ok=True)
    shape = "grid" if len(args.tokens) * len(args.vocab) > 1 else f"N{args.tokens[0]}_V{args.vocab[0]}"
    stem = args.out / f"loss_{args.device}_{shape}"
    threads = torch.get_num_threads()
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({threads} threads, {os.cpu_count()} cores)"
    title = f"TP=1, {device}, torch {torch.__version__}, median of {args.repeats}"
    rows, skipped = run(args, on_rows=lambda rows, skipped: write_results(rows, skipped, stem, title))
    print(markdown(rows, title, skipped))
    try:
        if rows:
            plot(rows, stem.with_suffix(".png"))
    except ImportError:
        print("matplotlib not installed: no chart", file=sys.stderr)
    print(f"\nwrote {stem}.csv, .md and .png", file=sys.stderr)
    return rows


def write_results(rows, skipped, stem, title):
    """CSV and Markdown of the rows so far."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    stem.with_suffix(".md").write_text(markdown(rows, title, skipped) + "\n")


if __name__ == "__main__":
    main()
