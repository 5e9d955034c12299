"""A tiny Megatron-Core GPT with the objective hook installed, in bf16: the hook's checks on a device.

  1. `nll` through the hook equals Megatron's own per-token loss, and gives the same gradients, both
     over the logits and with the fused output layer (`fusion="linear"`);
  2. `neg_p_threshold` trains: a few AdamW steps on one fixed batch, the loss and the kept fraction
     of every step recorded; the check is that the loss falls.

Writes gpt_check.csv (one row per training step), gpt_check.md (the checks, PASS/FAIL) and
gpt_check.png (the loss curve) under --out; exits 1 when a check fails.

    python benchmarks/gpt_check.py --out benchmarks/results/gpt          # CUDA when there is one
    python benchmarks/gpt_check.py --device cpu --vocab 256 --hidden 32 --seq 16 --steps 3 --out /tmp/gpt
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path

import torch


def init_megatron(device: torch.device) -> None:
    """One-rank Megatron parallel state: NCCL and Megatron's CUDA RNG tracker, or the project's CPU set-up."""
    from megatron.core import parallel_state, tensor_parallel

    if device.type == "cuda":
        import torch.distributed as dist

        from nemo_beyond_nll.engines.cpu.runtime import _free_port

        if not dist.is_initialized():
            dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
        parallel_state.initialize_model_parallel(1)
        tensor_parallel.model_parallel_cuda_manual_seed(1234)
    else:
        from nemo_beyond_nll.engines.cpu.runtime import init_megatron_cpu

        init_megatron_cpu(tensor_parallel=1)


def build(args, device):
    from nemo_beyond_nll.engines.cpu.models import TinyGPTConfig, build_tiny_gpt

    cfg = TinyGPTConfig(vocab_size=args.vocab, seq_length=args.seq, hidden_size=args.hidden, num_layers=2,
                        num_attention_heads=4, ffn_hidden_size=4 * args.hidden)
    return build_tiny_gpt(cfg).to(device=device, dtype=torch.bfloat16)


def batch(args, device):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g)
    labels = torch.roll(tokens, -1, dims=1)
    positions = torch.arange(args.seq)[None].expand(args.batch, -1)
    mask = torch.triu(torch.ones(args.seq, args.seq, dtype=torch.bool), diagonal=1)[None, None]
    return [t.to(device) for t in (tokens, positions, mask, labels)]


def loss_and_grads(model, inputs):
    """Per-token loss [b, s] and the gradients of its sum, in fp32."""
    model.zero_grad(set_to_none=True)
    tokens, positions, mask, labels = inputs
    loss = model(tokens, positions, mask, labels=labels)
    loss.float().sum().backward()
    grads = {name: p.grad.float().clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach().float(), grads


def max_relative_grad_gap(a: dict, b: dict) -> float:
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())
    return max(((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)).item() for k in a)


def check_nll(model, inputs, tolerances):
    """Megatron's own loss against the hook's nll, unfused and fused: [(check, value, limit, passed)]."""
    from nemo_beyond_nll.megatron import install, last_output, uninstall

    reference, reference_grads = loss_and_grads(model, inputs)
    results = []
    for fusion in (None, "linear"):
        install(model, "nll", fusion=fusion)
        loss, grads = loss_and_grads(model, inputs)
        ran = last_output(model) is not None  # the hook's loss, not Megatron's, gave `loss`
        uninstall(model)
        label = "over the logits" if fusion is None else "fused output layer"
        loss_gap = (loss - reference).abs().max().item()
        grad_gap = max_relative_grad_gap(grads, reference_grads)
        loss_limit, grad_limit = tolerances[fusion]
        results.append((f"the hook computed the loss, {label}", float(ran), 1.0, ran))
        results.append((f"nll = Megatron's loss, {label}: max abs difference", loss_gap, loss_limit,
                        loss_gap <= loss_limit))
        results.append((f"nll = Megatron's gradients, {label}: max relative norm of the difference", grad_gap,
                        grad_limit, grad_gap <= grad_limit))
    return results, reference.mean().item()


def train(model, inputs, args):
    """AdamW steps on one batch with neg_p_threshold; per step: mean loss over kept tokens and the kept fraction."""
    from nemo_beyond_nll.megatron import install, last_output, uninstall

    install(model, "neg_p_threshold", threshold=args.threshold)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    tokens, positions, mask, labels = inputs
    history = []
    for step in range(args.steps):
        optimizer.zero_grad(set_to_none=True)
        loss = model(tokens, positions, mask, labels=labels).float()
        kept = last_output(model).kept
        (loss.sum() / kept.sum().clamp_min(1)).backward()
        optimizer.step()
        history.append({"step": step, "objective": "neg_p_threshold", "threshold": args.threshold,
                        "loss_per_kept_token": (loss.sum() / kept.sum().clamp_min(1)).item(),
                        "kept_fraction": kept.float().mean().item(),
                        "mean_p": last_output(model).prob.float().mean().item()})
        print(f"  step {step}: loss {history[-1]['loss_per_kept_token']:.4f} kept "
              f"{history[-1]['kept_fraction']:.3f} mean p {history[-1]['mean_p']:.4f}", file=sys.stderr, flush=True)
    uninstall(model)
    return history


def plot(history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([h["step"] for h in history], [h["loss_per_kept_token"] for h in history], marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("neg_p_threshold loss per kept token")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threshold", type=float, default=None,
                        help="keep tokens with p >= this (default: 0.1/V, about 1/10 of the untrained model's p)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpt"))
    args = parser.parse_args(argv)
    args.threshold = args.threshold if args.threshold is not None else 0.1 / args.vocab
    device = torch.device(args.device)
    warnings.filterwarnings("ignore", module="megatron")

    init_megatron(device)
    model = build(args, device)
    inputs = batch(args, device)
    # bf16 logits, the same in both paths: Megatron's and the hook's loss are both fp32 math over them.
    # The fused path recomputes the logits block by block, so its bf16 rounding differs slightly.
    tolerances = {None: (2e-3, 2e-2), "linear": (5e-2, 5e-2)}
    checks, start_nll = check_nll(model, inputs, tolerances)
    history = train(model, inputs, args)
    first, last = history[0]["loss_per_kept_token"], history[-1]["loss_per_kept_token"]
    checks.append(("neg_p_threshold trains: last loss / first loss", last / first, 1.0, last < first))

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "gpt_check.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    lines = [f"Megatron-Core GPT, 2 layers, hidden {args.hidden}, V={args.vocab}, batch {args.batch} x seq {args.seq}, "
             f"bf16, {name}, torch {torch.__version__}; untrained nll {start_nll:.3f} (log V = "
             f"{torch.tensor(float(args.vocab)).log().item():.3f})", "",
             "| check | value | limit | result |", "|---|---:|---:|---|"]
    lines += [f"| {c} | {v:.3g} | {lim:.3g} | {'PASS' if ok else 'FAIL'} |" for c, v, lim, ok in checks]
    lines += ["", f"neg_p_threshold (p >= {args.threshold:.3g}), AdamW lr {args.lr}, {args.steps} steps on one batch: "
              f"loss per kept token {first:.4f} -> {last:.4f}, kept fraction {history[0]['kept_fraction']:.3f} -> "
              f"{history[-1]['kept_fraction']:.3f}"]
    table = "\n".join(lines)
    (args.out / "gpt_check.md").write_text(table + "\n")
    print(table)
    try:
        plot(history, args.out / "gpt_check.png")
    except ImportError:
        print("matplotlib not installed: no chart", file=sys.stderr)
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
