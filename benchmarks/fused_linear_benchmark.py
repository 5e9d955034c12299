"""Output layer + loss, fused against unfused: fwd+bwd time and peak memory.

  unfused  logits = hidden @ weight.T, then vocab_parallel_objective (in-place backward), autograd
           through the matmul: the [N, V] logits exist from forward to backward;
  fused    vocab_parallel_linear_objective: blocks of the vocabulary, logits recomputed in backward;
and, optionally (--compare; CUDA, when the library imports; cross entropy only, as each library runs it):
  liger    Liger-Kernel's fused linear cross entropy (token chunks; gradients computed in forward; mean);
  cce      Cut Cross-Entropy's linear_cross_entropy (per token; its default gradient filtering).
A comparison that is missing or fails is skipped, with its reason under the table.

Both produce grads for hidden [N, H] and weight [V, H]. Memory, measured with loss_benchmark's
PeakMemory (VmHWM reset through /proc/self/clear_refs on CPU; the allocator's peak on CUDA):
  peak       the high-water mark above the memory before the step (inputs excluded);
  transient  the peak minus what is still held after the step (the gradients of hidden and
             weight, which training keeps in any case): the memory the loss path itself costs.
Memory figures are the worst (max) over the repeats, with the median beside the transient one.
Repeats alternate between the methods so that a change in machine load hits both alike; the table
gives the best and the median time (on a shared machine the best is the steadier figure).

    python benchmarks/fused_linear_benchmark.py                        # N=2048, H=1024, V=131072, fp32
    python benchmarks/fused_linear_benchmark.py --tokens 512 --vocab 32768 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from loss_benchmark import DTYPES, PeakMemory  # noqa: E402

from nemo_beyond_nll import vocab_parallel_linear_objective, vocab_parallel_objective  # noqa: E402
from nemo_beyond_nll.core.linear import default_chunk_vocab  # noqa: E402


def unfused(hidden, weight, target, objective, chunk_vocab):
    return vocab_parallel_objective(hidden @ weight.t(), target, objective).loss


def fused(hidden, weight, target, objective, chunk_vocab):
    return vocab_parallel_linear_objective(hidden, weight, target, objective, chunk_vocab=chunk_vocab).loss


def liger(hidden, weight, target, objective, chunk_vocab):
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    return liger_fused_linear_cross_entropy(hidden, weight, target)


def cce(hidden, weight, target, objective, chunk_vocab):
    from cut_cross_entropy import linear_cross_entropy

    return linear_cross_entropy(hidden, weight, target, reduction="none")


METHODS = {"unfused": unfused, "fused": fused}
COMPARISONS = {"liger": (liger, "liger_kernel"), "cce": (cce, "cut_cross_entropy")}


def comparisons(device, names) -> tuple[dict, dict]:
    """({method: fn}, {method: why it is skipped}) for the optional comparisons asked for."""
    found, skipped = {}, {}
    for name in names:
        fn, module = COMPARISONS[name]
        if device.type != "cuda":
            skipped[name] = "its kernels need CUDA"
            continue
        try:
            __import__(module)
        except Exception as e:
            skipped[name] = f"{type(e).__name__}: {e}"
            continue
        found[name] = fn
    return found, skipped


def release_freed_heap() -> None:
    """Hand freed heap pages back to the OS, so that reusing them shows up in VmHWM again (glibc)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def one_step(fn, hidden0, weight0, target, upstream, args, device):
    hidden = hidden0.clone().requires_grad_()
    weight = weight0.clone().requires_grad_()
    if device.type == "cuda":
        torch.cuda.synchronize()
    else:
        release_freed_heap()
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        loss = fn(hidden, weight, target, args.objective, args.chunk_vocab)
        (loss * upstream).sum().backward()
        del loss
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    # The two gradients are still referenced here; training keeps them whatever the loss path.
    grads = hidden.grad.numel() * hidden.grad.element_size() + weight.grad.numel() * weight.grad.element_size()
    del hidden, weight
    return elapsed, mem.peak, mem.peak - grads, grads


def run(args):
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    g = torch.Generator().manual_seed(0)
    hidden0 = torch.randn(args.tokens, args.hidden, generator=g).to(device=device, dtype=dtype)
    weight0 = (torch.randn(args.vocab, args.hidden, generator=g) / args.hidden**0.5).to(device=device, dtype=dtype)
    target = torch.randint(0, args.vocab, (args.tokens,), generator=g).to(device)
    upstream = (torch.rand(args.tokens, generator=g) / args.tokens).to(device)
    methods, skipped = comparisons(device, args.compare)
    methods = {**METHODS, **methods}
    results = {name: [] for name in methods}
    for rep in range(args.repeats + 1):  # the first round warms up
        for name, fn in list(methods.items()):
            try:
                measured = one_step(fn, hidden0, weight0, target, upstream, args, device)
            except Exception as e:  # a failing comparison must not cost the others
                if name in METHODS:
                    raise
                skipped[name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                del methods[name], results[name]
                continue
            print(f"  round {rep} {name:8s} {measured[0]:7.2f} s  peak {measured[1] / 2**20:8.0f} MiB  "
                  f"transient {measured[2] / 2**20:8.0f} MiB", file=sys.stderr, flush=True)
            if rep:
                results[name].append(measured)
    rows = {}
    for name, runs in results.items():
        rows[name] = {
            "seconds": statistics.median(r[0] for r in runs),
            "best_seconds": min(r[0] for r in runs),
            "peak_mib": max(r[1] for r in runs) / 2**20,
            "transient_mib": max(r[2] for r in runs) / 2**20,
            "transient_median_mib": statistics.median(r[2] for r in runs) / 2**20,
            "grads_mib": runs[0][3] / 2**20,
        }
    return rows, skipped


def machine_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def ratio(fused_mib, unfused_mib) -> str:
    if fused_mib < 1:  # allocator reuse makes peaks this small unmeasurable through VmHWM
        return f"below 1 MiB against {unfused_mib:.0f} MiB"
    return f"{fused_mib / unfused_mib:.3f} (1/{unfused_mib / fused_mib:.1f})"


def markdown(rows, args, skipped=None):
    logits_mib = args.tokens * args.vocab * torch.empty((), dtype=DTYPES[args.dtype]).element_size() / 2**20
    u, f = rows["unfused"], rows["fused"]
    lines = [
        f"N={args.tokens}, H={args.hidden}, V={args.vocab}, {args.dtype}, objective {args.objective}, "
        f"blocks of {args.chunk_vocab} vocabulary columns, {args.device} {machine_name(torch.device(args.device))} ({torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores), torch {torch.__version__}, median of {args.repeats}; "
        f"logits {logits_mib:.0f} MiB, grads of hidden and weight {u['grads_mib']:.0f} MiB",
        "",
        "| method | fwd+bwd s, best | fwd+bwd s, median | peak MiB, max | transient MiB (peak minus the grads "
        "kept), max | transient MiB, median |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['best_seconds']:.2f} | {r['seconds']:.2f} | {r['peak_mib']:.0f} "
                     f"| {r['transient_mib']:.0f} | {r['transient_median_mib']:.0f} |")
    lines += [
        "",
        f"fused / unfused: time {f['best_seconds'] / u['best_seconds']:.2f}x best, "
        f"{f['seconds'] / u['seconds']:.2f}x median; peak memory {ratio(f['peak_mib'], u['peak_mib'])}, "
        f"transient memory {ratio(f['transient_mib'], u['transient_mib'])}",
    ]
    for name in rows.keys() - METHODS.keys():
        r = rows[name]
        lines.append(f"fused / {name}: time {f['best_seconds'] / r['best_seconds']:.2f}x best; "
                     f"transient memory {ratio(f['transient_mib'], r['transient_mib'])}")
    if skipped:
        lines += ["", "Skipped:"] + [f"- {name}: {why}" for name, why in skipped.items()]
    return "\n".join(lines)


def write_csv(rows, args, path):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        fields = list(next(iter(rows.values())))
        writer.writerow(["tokens", "hidden", "vocab", "dtype", "objective", "method", *fields])
        for name, r in rows.items():
            writer.writerow([args.tokens, args.hidden, args.vocab, args.dtype, args.objective, name,
                             *(r[k] for k in fields)])


def plot(rows, path):
    """Best fwd+bwd time and transient memory of each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, (field, unit) in zip(axes, (("best_seconds", "fwd+bwd s, best"), ("transient_mib", "transient MiB, max"))):
        ax.bar(list(rows), [r[field] for r in rows.values()])
        ax.set_ylabel(unit)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=131072, help="vocabulary per rank")
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    parser.add_argument("--objective", default="neg_p")
    parser.add_argument("--chunk-vocab", type=int, default=None, help="default: the library's default")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compare", nargs="*", default=list(COMPARISONS), choices=list(COMPARISONS),
                        help="optional comparisons (CUDA)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.chunk_vocab is None:
        args.chunk_vocab = default_chunk_vocab(args.tokens, DTYPES[args.dtype], args.device)

    rows, skipped = run(args)
    table = markdown(rows, args, skipped)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"fused_linear_{args.device}_N{args.tokens}_H{args.hidden}_V{args.vocab}_{args.dtype}.md"
    path.write_text(table + "\n")
    write_csv(rows, args, path.with_suffix(".csv"))
    try:
        plot(rows, path.with_suffix(".png"))
    except ImportError:
        print("matplotlib not installed: no chart", file=sys.stderr)
    print(f"\nwrote {path} and its .csv and .png", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
