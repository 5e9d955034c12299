"""torchrun worker: the fused linear objective at TP=world equals the unfused whole vocabulary.

Each rank holds its rows of the same output weight. Loss, prob, kept, the hidden states' gradient
(all-reduced by the function) and this rank's slice of the weight gradient must equal the matmul +
vocab_parallel_objective over the whole vocabulary, and be bitwise equal on all ranks; forward
costs one all-gather, backward one all-reduce. With reduce_hidden_grad=False each rank's hidden
gradient is a partial sum that adds up to the whole. Raises on the first mismatch.
"""


import torch
import rank_report
import torch.distributed as dist
from tp_checks import check, collectives, counting, fail, same_on_all_ranks
from worker_start import start_worker

import nemo_beyond_nll.core.linear as linear
from nemo_beyond_nll.core import passes
from nemo_beyond_nll import get_objective, vocab_parallel_linear_objective, vocab_parallel_objective

OBJECTIVES = ["nll", "neg_p", "GeneralFamily-3", "OnlyTopP-0.02", "OnlyBottomLogP-0.02", "dft",
              "log_one_minus_p", "UnlikehoodTop-0.02", "adaptive_power"]
TOLERANCE = {torch.float64: (1e-10, 1e-12), torch.float32: (2e-5, 2e-6), torch.bfloat16: (2e-2, 2e-2)}


def main():
    rank, world, group = start_worker(tp_group=True)
    passes.all_gather_flat = counting(passes.all_gather_flat, "all_gather")
    linear.dist.all_reduce = counting(dist.all_reduce, "all_reduce")

    n, h, v_local = 14, 6, 11
    g = torch.Generator().manual_seed(0)
    hidden64 = torch.randn(2, n // 2, h, generator=g, dtype=torch.float64)
    weight64 = torch.randn(v_local * world, h, generator=g, dtype=torch.float64)
    target = torch.randint(0, v_local * world, (2, n // 2), generator=g)
    target[0, :2] = -100
    upstream = torch.rand(target.shape, generator=g, dtype=torch.float64)
    rows = slice(rank * v_local, (rank + 1) * v_local)

    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        for name in OBJECTIVES:
            what = f"{name} {dtype} TP={world}"
            whole_h = hidden64.to(dtype).clone().requires_grad_()
            whole_w = weight64.to(dtype).clone().requires_grad_()
            whole = vocab_parallel_objective(whole_h @ whole_w.t(), target, name)
            (whole.loss * upstream.to(whole.loss.dtype)).sum().backward()

            shard_h = hidden64.to(dtype).clone().requires_grad_()
            shard_w = weight64[rows].to(dtype).clone().requires_grad_()
            collectives.clear()
            out = vocab_parallel_linear_objective(shard_h, shard_w, target, name, tp_group=group, chunk_vocab=4)
            if collectives != ["all_gather"]:
                fail(f"{what}: forward made collectives {collectives}, expected one all-gather")
            collectives.clear()
            (out.loss * upstream.to(out.loss.dtype)).sum().backward()
            if collectives != ["all_reduce"]:
                fail(f"{what}: backward made collectives {collectives}, expected one all-reduce")

            check(out.loss, whole.loss, f"{what} loss", TOLERANCE[dtype])
            check(out.prob, whole.prob, f"{what} prob", TOLERANCE[dtype])
            if not torch.equal(out.kept, whole.kept):
                fail(f"{what}: kept differs")
            check(shard_h.grad, whole_h.grad, f"{what} hidden grad", TOLERANCE[dtype])
            check(shard_w.grad, whole_w.grad[rows], f"{what} weight grad", TOLERANCE[dtype])
            for t, label in ((out.loss, "loss"), (out.prob, "prob"), (out.kept, "kept"), (shard_h.grad, "hgrad")):
                same_on_all_ranks(t.detach(), f"{what} {label}")
            if (out.power is None) != (name != "adaptive_power"):
                fail(f"{what}: power {out.power}")
            if out.power is not None:  # adaptive_power's m: bitwise the same on every rank, no collective
                same_on_all_ranks(out.power.reshape(1), f"{what} power")
                check(out.power, whole.power, f"{what} power", TOLERANCE[dtype])
            if get_objective(name).is_thresholded and (out.kept.all() or not out.kept.any()):
                fail(f"{what}: threshold did not split the tokens")

    # Without the reduction, each rank's hidden gradient is its vocabulary slice's share.
    partial_h = hidden64.clone().requires_grad_()
    out = vocab_parallel_linear_objective(partial_h, weight64[rows], target, "neg_p", tp_group=group,
                                          reduce_hidden_grad=False)
    collectives.clear()
    (out.loss * upstream).sum().backward()
    if collectives:
        fail(f"reduce_hidden_grad=False still made collectives {collectives}")
    whole_h = hidden64.clone().requires_grad_()
    (vocab_parallel_objective(whole_h @ weight64.t(), target, "neg_p").loss * upstream).sum().backward()
    summed = partial_h.grad.clone()
    dist.all_reduce(summed, group=group)
    check(summed, whole_h.grad, "sum of partial hidden grads", TOLERANCE[torch.float64])
    if world > 1 and torch.allclose(partial_h.grad, whole_h.grad):
        fail("a partial hidden grad already equals the whole one; the check would not check")
    dist.barrier()
    dist.destroy_process_group()
    return {"tp": world, "objectives": len(OBJECTIVES)}


if __name__ == "__main__":
    rank_report.run(main)
