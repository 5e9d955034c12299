"""Workers for test_tensor_parallel.py, started by torch.multiprocessing.spawn with gloo on the CPU.

Each raises on the first mismatch (the spawning test re-raises it with this process's traceback)
and writes the largest differences it saw to OUT/<check>-rank<r>.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import ColwiseParallel, parallelize_module

from nemo_beyond_nll.automodel import AutoModelObjectiveLoss
from nemo_beyond_nll.core import module
from worker_start import start_worker  # tests/support, on the path through tests/conftest.py

B, S, V, H = 2, 5, 38, 12
OBJECTIVES = [
    ("nll", {}), ("neg_p", {}), ("neg_p_power", {"alpha": 3.0}), ("dft", {}),
    ("neg_p_threshold", {"threshold": 0.03}), ("neg_p_threshold", {"threshold": 0.05, "keep": "below"}),
    ("nll_threshold", {"threshold": 0.03}), ("OnlyTopP-0.03", {}),
    ("log_one_minus_p", {}), ("UnlikehoodTop-0.03", {}), ("adaptive_power", {}),
]


def data(seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, S, V, generator=g) * 2).to(dtype)
    labels = torch.randint(0, V, (B, S), generator=g)
    labels[0, 0] = -100
    labels[1, 3] = -100
    return logits, labels


def same_on_every_rank(t: torch.Tensor, what: str):
    gathered = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, t.contiguous())
    for other in gathered:
        if not torch.equal(other, gathered[0]):
            raise AssertionError(f"{what} differs between ranks: {[g.flatten()[:4] for g in gathered]}")


class NoGather:
    """DTensor.full_tensor() raises inside this block: vocab-sharded logits must never be gathered."""

    def __enter__(self):
        self.original = DTensor.full_tensor

        def refuse(self_, *args, **kwargs):
            if self_.ndim == 3:
                raise AssertionError("full_tensor() called on the logits")
            return self.original(self_, *args, **kwargs)

        DTensor.full_tensor = refuse

    def __exit__(self, *exc):
        DTensor.full_tensor = self.original


def reference(name, args, logits, labels, num):
    """The unsharded loss and gradient (TP=1, no collective)."""
    x = logits.clone().requires_grad_()
    loss = AutoModelObjectiveLoss(name, args, kept_count_group="local")(x, labels, num_label_tokens=num)
    loss.backward()
    return loss.detach(), x.grad


def tensor_parallel(rank: int, world: int, out: str):
    """Vocab-sharded DTensor logits (leaf and a ColwiseParallel lm_head) equal the unsharded loss."""
    mesh = init_device_mesh("cpu", (world,), mesh_dim_names=("tp",))
    v_local = V // world
    worst = {"loss": 0.0, "grad": 0.0, "weight_grad": 0.0, "hidden_grad": 0.0}
    for i, (name, args) in enumerate(OBJECTIVES):
        for dtype in (torch.float32, torch.bfloat16):
            logits, labels = data(10 + i, dtype)
            num = int((labels != -100).sum())
            ref_loss, ref_grad = reference(name, args, logits, labels, num)
            tol = dict(rtol=1e-6, atol=1e-7) if dtype == torch.float32 else dict(rtol=2 ** -7, atol=1e-6)

            # a DTensor leaf sharded on the vocabulary (placements Shard(2) and Shard(-1)), labels
            # plain and as a replicated DTensor
            for placement, dlabels in ((Shard(2), labels), (Shard(-1), DTensor.from_local(labels, mesh, [Replicate()]))):
                local = logits[..., rank * v_local:(rank + 1) * v_local].clone().requires_grad_()
                sharded = DTensor.from_local(local, mesh, [placement], run_check=False)
                loss_fn = AutoModelObjectiveLoss(name, args)
                with NoGather():
                    loss = loss_fn(sharded, dlabels, num_label_tokens=num)
                loss.backward()
                same_on_every_rank(loss.detach(), f"{name} loss")
                if "power" in loss_fn.last_metrics:  # adaptive_power's m
                    same_on_every_rank(loss_fn.last_metrics["power"].reshape(1), f"{name} power")
                torch.testing.assert_close(loss.detach(), ref_loss, **tol)
                torch.testing.assert_close(local.grad, ref_grad[..., rank * v_local:(rank + 1) * v_local], **tol)
                worst["loss"] = max(worst["loss"], (loss.detach() - ref_loss).abs().item())
                worst["grad"] = max(worst["grad"], (local.grad.float() - ref_grad[..., rank * v_local:(rank + 1) * v_local].float()).abs().max().item())

        # an lm_head under AutoModel's TP plan for the head: ColwiseParallel(output_layouts=Shard(-1),
        # use_local_output=False); gradients reach the sharded weight and the replicated input
        g = torch.Generator().manual_seed(100 + i)
        hidden = torch.randn(B, S, H, generator=g)
        weight = torch.randn(V, H, generator=g) / H ** 0.5
        _, labels = data(10 + i)
        num = int((labels != -100).sum())
        head = torch.nn.Linear(H, V, bias=False)
        head.weight.data.copy_(weight)
        h_ref = hidden.clone().requires_grad_()
        w_ref = weight.clone().requires_grad_()
        ref = AutoModelObjectiveLoss(name, args, kept_count_group="local")(h_ref @ w_ref.t(), labels, num_label_tokens=num)
        ref.backward()
        parallelize_module(head, mesh, ColwiseParallel(output_layouts=Shard(-1), use_local_output=False))
        h = hidden.clone().requires_grad_()
        logits = head(h)
        assert isinstance(logits, DTensor) and logits.to_local().shape[-1] == v_local
        with NoGather():
            loss = AutoModelObjectiveLoss(name, args)(logits, labels, num_label_tokens=num)
        loss.backward()
        same_on_every_rank(loss.detach(), f"{name} head loss")
        weight_grad = head.weight.grad.full_tensor()
        same_on_every_rank(h.grad, f"{name} hidden grad")
        torch.testing.assert_close(loss.detach(), ref.detach(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(weight_grad, w_ref.grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(h.grad, h_ref.grad, rtol=1e-5, atol=1e-7)
        worst["loss"] = max(worst["loss"], (loss.detach() - ref.detach()).abs().item())
        worst["weight_grad"] = max(worst["weight_grad"], (weight_grad - w_ref.grad).abs().max().item())
        worst["hidden_grad"] = max(worst["hidden_grad"], (h.grad - h_ref.grad).abs().max().item())
    Path(out, f"tensor_parallel-rank{rank}.json").write_text(json.dumps(worst))
    dist.destroy_process_group()


def data_parallel(rank: int, world: int, out: str):
    """Different tokens on each rank, AutoModel's global num_label_tokens: the ranks' losses sum to
    the paper's mean over the kept tokens of all ranks, and each rank's gradient is that mean's."""
    worst = {"loss": 0.0, "grad": 0.0}
    for i, (name, args) in enumerate(OBJECTIVES):
        if name == "adaptive_power":
            continue  # m is per micro-batch: each rank's own, not the concatenated batch's (tested in tensor_parallel)
        parts = [data(50 + 7 * i + r) for r in range(world)]
        num = sum(int((labels != -100).sum()) for _, labels in parts)
        logits, labels = parts[rank]
        x = logits.clone().requires_grad_()
        loss_fn = AutoModelObjectiveLoss(name, args)
        loss = loss_fn(x, labels, num_label_tokens=num)
        loss.backward()
        total = loss.detach().clone()
        dist.all_reduce(total)

        xs = [p[0].clone().requires_grad_() for p in parts]
        paper = module.ObjectiveLoss(name, args)(torch.cat(xs), torch.cat([p[1] for p in parts]))
        paper.backward()
        torch.testing.assert_close(total, paper.detach(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(x.grad, xs[rank].grad, rtol=1e-5, atol=1e-8)
        # threshold objectives all-reduce their counts, so their metrics are the group's; the others
        # run no collective and report this rank's
        counted = parts if loss_fn.objective.is_thresholded else [parts[rank]]
        kept = sum(int(module.ObjectiveLoss(name, args).per_token(p[0], p[1]).kept.sum()) for p in counted)
        labelled = sum(int((p[1] != -100).sum()) for p in counted)
        if int(loss_fn.last_metrics["kept_tokens"]) != kept or int(loss_fn.last_metrics["label_tokens"]) != labelled:
            raise AssertionError(f"{name}: metrics {loss_fn.last_metrics}, expected {kept} kept of {labelled}")
        worst["loss"] = max(worst["loss"], (total - paper.detach()).abs().item())
        worst["grad"] = max(worst["grad"], (x.grad - xs[rank].grad).abs().max().item())
    Path(out, f"data_parallel-rank{rank}.json").write_text(json.dumps(worst))
    dist.destroy_process_group()


CHECKS = {"tensor_parallel": tensor_parallel, "data_parallel": data_parallel}


def run(rank: int, check: str, world: int, port: int, out: str):
    chosen = CHECKS[check]  # an unknown check fails before any rank waits for the others
    start_worker(rank, world, port)
    chosen(rank, world, out)
