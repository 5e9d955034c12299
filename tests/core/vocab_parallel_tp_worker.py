"""torchrun worker: sharded vocab_parallel_objective equals the whole-vocabulary result.

For every objective and dtype, each rank takes its slice of the same logits; loss, prob, kept and
the gradient slice must equal the whole-vocabulary computation, be bitwise equal on all ranks,
and cost exactly one collective (none in backward). Raises on the first mismatch.

`vocab_parallel_tp_worker.py triton` runs the shards with the Triton kernels (interpreted on these
CPU tensors) against the torch backend's whole-vocabulary result.
"""

import math
import os
import sys

BACKEND = sys.argv[1] if len(sys.argv) > 1 else "torch"
if BACKEND == "triton":
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported: these are CPU tensors

import torch
import rank_report
import torch.distributed as dist
from tp_checks import check, collectives, counting, fail, same_on_all_ranks
from worker_start import start_worker

from nemo_beyond_nll.core import passes
from nemo_beyond_nll import get_objective, vocab_parallel_objective

OBJECTIVES = ["nll", "neg_p", "neg_p_power", "GeneralFamily-0.5", "OnlyTopP-0.02", "OnlyBottomP-0.02",
              "OnlyTopLogP-0.02", "OnlyBottomLogP-0.02", "dft",
              "log_one_minus_p", "UnlikehoodTop-0.02", "UnlikehoodBottom-0.02", "adaptive_power"]
TOLERANCE = {torch.float64: (1e-12, 1e-14), torch.float32: (2e-5, 1e-6), torch.bfloat16: (1e-2, 2e-3)}


def near_one_checks(rank, world, group, v_local, shard_cols):
    """log_one_minus_p at p = 1 - 1e-7, targets on the first and the last rank: the loss and every
    rank's gradient slice are finite, the loss the same on every rank, and both equal the
    whole-vocabulary result as far as the compute dtype resolves 1 - p. The shards merge the
    log-sum-exp in another order, and log(1 - p) amplifies its rounding by 1 / (1 - p): in fp64 the
    tolerance is eps / 1e-7. In fp32 (and bf16) 1 - p = 1e-7 is below eps: either side's 1 - p is 0
    to a few eps, held at the floor eps, so the values may differ by log of a few, and the gradient,
    w * (softmax - onehot) with w up to 1 / eps, by one w * eps <= 1 at the target."""
    vocab = v_local * world
    target = torch.tensor([1, vocab - 2])
    full = torch.full((2, vocab), math.log(1e-7 / (vocab - 1)), dtype=torch.float64)
    full[torch.arange(2), target] = 0.0
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        what = f"log_one_minus_p at p = 1 - 1e-7 {dtype} TP={world}"
        logits = full.to(dtype)
        whole_in = logits.clone().requires_grad_()
        whole = vocab_parallel_objective(whole_in * 1, target, "log_one_minus_p", backend="torch")
        whole.loss.sum().backward()
        shard_in = logits[:, shard_cols].clone().requires_grad_()
        out = vocab_parallel_objective(shard_in * 1, target, "log_one_minus_p", tp_group=group, backend=BACKEND)
        out.loss.sum().backward()
        if not (torch.isfinite(out.loss).all() and torch.isfinite(shard_in.grad).all()):
            fail(f"{what}: non-finite loss or gradient")
        if dtype == torch.float64:
            loss_tolerance = grad_tolerance = (100 * torch.finfo(dtype).eps / 1e-7, 1e-12)
        else:
            loss_tolerance, grad_tolerance = (0, math.log(4)), (TOLERANCE[dtype][0], 1.0)
            if (out.loss < math.log(torch.finfo(torch.float32).eps) - 1e-5).any():
                fail(f"{what}: loss {out.loss.tolist()} below the floor log(eps)")
        check(out.loss, whole.loss, f"{what} loss", loss_tolerance)
        check(shard_in.grad, whole_in.grad[:, shard_cols], f"{what} grad", grad_tolerance)
        same_on_all_ranks(out.loss.detach(), f"{what} loss")


def main():
    rank, world, group = start_worker(tp_group=True)
    passes.all_gather_flat = counting(passes.all_gather_flat)
    dist.all_reduce = counting(dist.all_reduce)
    launches = []
    if BACKEND == "triton":
        from nemo_beyond_nll.core import triton_kernels

        triton_kernels.MAX_BLOCK_V = 16  # two blocks per row of 24, the second one partial
        for name in ("row_stats", "write_gradient"):
            original = getattr(triton_kernels, name)
            setattr(triton_kernels, name, lambda *a, _f=original, _n=name, **k: launches.append(_n) or _f(*a, **k))

    n, v_local = (16 if BACKEND == "triton" else 48), 24  # the interpreter is slow: fewer rows
    g = torch.Generator().manual_seed(0)
    full = torch.randn(4, n // 4, v_local * world, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, v_local * world, (4, n // 4), generator=g)
    target[0, :3] = -100
    upstream = torch.rand(target.shape, generator=g, dtype=torch.float64)
    shard_cols = slice(rank * v_local, (rank + 1) * v_local)

    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        logits = full.to(dtype)
        for name in OBJECTIVES:
            what = f"{name} {dtype} TP={world}"
            whole_in = logits.clone().requires_grad_()
            whole = vocab_parallel_objective(whole_in * 1, target, name, backend="torch")
            (whole.loss * upstream.to(whole.loss.dtype)).sum().backward()

            shard_in = logits[..., shard_cols].clone().requires_grad_()
            collectives.clear()
            launches.clear()
            out = vocab_parallel_objective(shard_in * 1, target, name, tp_group=group, backend=BACKEND)
            if collectives != ["all_gather_single"] and collectives != ["all_gather_into_tensor"]:
                fail(f"{what}: forward made collectives {collectives}, expected one all-gather")
            collectives.clear()
            (out.loss * upstream.to(out.loss.dtype)).sum().backward()
            if collectives:
                fail(f"{what}: backward made collectives {collectives}")
            if BACKEND == "triton" and launches != ["row_stats", "write_gradient"]:
                fail(f"{what}: Triton kernels launched {launches}")

            check(out.loss, whole.loss, f"{what} loss", TOLERANCE[dtype])
            check(out.prob, whole.prob, f"{what} prob", TOLERANCE[dtype])
            if not torch.equal(out.kept, whole.kept):
                fail(f"{what}: kept differs")
            if shard_in.grad.dtype != dtype:
                fail(f"{what}: gradient dtype {shard_in.grad.dtype}")
            check(shard_in.grad, whole_in.grad[..., shard_cols], f"{what} grad", TOLERANCE[dtype])
            for t, label in ((out.loss, "loss"), (out.prob, "prob"), (out.kept, "kept")):
                same_on_all_ranks(t.detach(), f"{what} {label}")
            if (out.power is None) != (whole.power is None) or (out.power is None) != (name != "adaptive_power"):
                fail(f"{what}: power {out.power} sharded, {whole.power} whole")
            if out.power is not None:  # adaptive_power's m: bitwise the same on every rank, no collective
                same_on_all_ranks(out.power.reshape(1), f"{what} power")
                check(out.power, whole.power, f"{what} power", TOLERANCE[dtype])
            if get_objective(name).is_thresholded and (out.kept.all() or not out.kept.any()):
                fail(f"{what}: threshold did not split the tokens")

    near_one_checks(rank, world, group, v_local, shard_cols)

    # Out-of-vocabulary targets raise on every rank, naming the global vocabulary size.
    bad = target.clone()
    bad[1, 1] = v_local * world
    try:
        vocab_parallel_objective(full[..., shard_cols], bad, "nll", tp_group=group)
        fail("out-of-vocabulary target did not raise")
    except ValueError as err:
        if f"[0, {v_local * world})" not in str(err):
            fail(f"unexpected error {err}")
    dist.barrier()
    dist.destroy_process_group()  # an exit without it can abort in gloo's teardown
    return {"tp": world, "objectives": len(OBJECTIVES), "dtypes": 3, "backend": BACKEND,
            "kernel_launches": len(launches)}


if __name__ == "__main__":
    rank_report.run(main)
