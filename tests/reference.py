"""Plain closed-form objectives over the whole vocabulary, with autograd: the ground truth for tests.

Not the benchmark's `paper_loss` (benchmarks/loss_benchmark.py), which times the paper's fp32 code path
as users run it; this one is fp64 with ignore_index and the kept mask, for exactness."""

import dataclasses

import torch

CLOSED_FORM = {
    "nll": lambda p, lp, o: -lp,
    "neg_p": lambda p, lp, o: 1 - p,
    "neg_p_power": lambda p, lp, o: (1 - p**o.alpha) / o.alpha,
    "neg_p_threshold": lambda p, lp, o: 1 - p,
    "nll_threshold": lambda p, lp, o: -lp,
    "dft": lambda p, lp, o: -p.detach() * lp,
    "log_one_minus_p": lambda p, lp, o: torch.log(1 - p + o.offset),
    "log_one_minus_p_threshold": lambda p, lp, o: torch.log(1 - p + o.offset),
    # o.power: the batch's m, a constant (see reference_power)
    "adaptive_power": lambda p, lp, o: (1 - p**o.power) / o.power,
}


def reference_power(prob, valid, objective):
    """adaptive_power's m, the plain way: mean detached p of the supervised tokens, in [min_power, 1]."""
    m = prob.detach()[valid].mean().item() if bool(valid.any()) else 0.0
    return torch.tensor(min(max(m, objective.min_power), 1.0), dtype=torch.float64)


def reference_objective(logits, target, objective, ignore_index=-100):
    """(loss, prob, kept) computed in fp64 the obvious way; loss is differentiable w.r.t. logits."""
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    valid = target != ignore_index
    logprob = logprobs.gather(-1, torch.where(valid, target, 0)[..., None]).squeeze(-1)
    prob = logprob.exp()
    kept = valid.clone()
    if objective.name == "adaptive_power":
        objective = dataclasses.replace(objective, power=reference_power(prob, valid, objective))
    if objective.threshold is not None:
        p = prob.detach()
        kept &= (p >= objective.threshold) if objective.keep == "above" else (p <= objective.threshold)
    loss = torch.where(kept, CLOSED_FORM[objective.name](prob, logprob, objective), 0.0)
    return loss, torch.where(valid, prob.detach(), 0.0), kept
