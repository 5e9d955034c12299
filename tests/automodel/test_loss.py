"""nemo_beyond_nll.automodel's losses against NeMo AutoModel's own MaskedCrossEntropy (nll) and against
the project's core (every objective), through AutoModel's own loss call (`calculate_loss`)."""

from __future__ import annotations

import itertools

import pytest
import torch
from nemo_automodel.components.loss.linear_ce_base import LinearCrossEntropy
from nemo_automodel.components.loss.masked_ce import MaskedCrossEntropy
from nemo_automodel.components.loss.utils import calculate_loss

from nemo_beyond_nll.automodel import AutoModelLinearObjectiveLoss, AutoModelObjectiveLoss
from nemo_beyond_nll.core import module
from nemo_beyond_nll.core.objectives import FAMILIES
from nemo_beyond_nll.core.vocab_parallel import vocab_parallel_objective

B, S, V, H = 3, 7, 37, 16
# Every canonical objective, and every reference-name pattern of the paper's code.
OBJECTIVES = [(name, {}) for name in FAMILIES] + [
    ("neg_p_threshold", {"threshold": 0.02, "keep": "below"}),
    ("original", {}), ("logp", {}), ("p", {}), ("GeneralFamily-3", {}), ("OnlyTopP-0.03", {}),
    ("OnlyBottomP-0.05", {}), ("OnlyTopLogP-0.03", {}), ("OnlyBottomLogP-0.05", {}),
    ("UnlikehoodTop-0.03", {}), ("UnlikehoodBottom-0.05", {}),
]
THRESHOLD = {"neg_p_threshold": {"threshold": 0.03}, "nll_threshold": {"threshold": 0.03},
             "log_one_minus_p_threshold": {"threshold": 0.03}}


def batch(dtype, seed=0, ignore_index=-100):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, S, V, generator=g) * 2).to(dtype)
    labels = torch.randint(0, V, (B, S), generator=g)
    labels[0, :2] = -100  # the dataset's padding
    labels[2, 5] = -100
    if ignore_index != -100:
        labels[1, 3] = ignore_index  # a label equal to the loss's own ignore_index
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, 4:] = 0
    weights = torch.rand(B, S, generator=g) + 0.5
    return logits, labels, mask, weights


def grad_of(loss_fn, logits, *args, **kwargs):
    x = logits.clone().requires_grad_()
    loss = loss_fn(x, *args, **kwargs)
    (loss.sum() if loss.dim() else loss).backward()
    return loss.detach(), x.grad


def cloned(kwargs):
    # MaskedCrossEntropy writes into the labels it is given when a mask is passed
    return {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}


CASES = [
    dict(dtype=dtype, reduction=reduction, ignore_index=ignore_index, mask=mask, num=num, weights=weights)
    for dtype, reduction, ignore_index, mask, num, weights in itertools.product(
        (torch.float32, torch.bfloat16), ("sum", "mean"), (-100, 5), (False, True), (None, 19, 0), (False, True))
    if reduction == "sum" or (num is None and not weights)
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(
    f"{k}={str(v).replace('torch.', '')}" for k, v in c.items()))
def test_nll_equals_masked_cross_entropy(case):
    logits, labels, mask, weights = batch(case["dtype"], ignore_index=case["ignore_index"])
    kwargs = {}
    if case["mask"]:
        kwargs["mask"] = mask
    if case["num"] is not None:
        kwargs["num_label_tokens"] = case["num"]
    if case["weights"]:
        kwargs["loss_weights"] = weights
    ours = AutoModelObjectiveLoss("nll", ignore_index=case["ignore_index"], reduction=case["reduction"])
    theirs = MaskedCrossEntropy(ignore_index=case["ignore_index"], reduction=case["reduction"])
    value, grad = grad_of(ours, logits, labels.clone(), **cloned(kwargs))
    ref_value, ref_grad = grad_of(theirs, logits, labels.clone(), **cloned(kwargs))
    assert grad.dtype == ref_grad.dtype == case["dtype"]
    torch.testing.assert_close(value.float(), ref_value.float(), rtol=1e-6, atol=1e-6)
    if case["dtype"] == torch.float32:
        torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-7)
    else:  # both round the same fp32 gradient to bf16; the fp32 sums may differ in their last bit
        torch.testing.assert_close(grad.float(), ref_grad.float(), rtol=2 ** -7, atol=1e-6)


def test_nll_matches_through_automodels_calculate_loss():
    logits, labels, _, weights = batch(torch.float32, seed=3)
    for loss_weights in (None, weights):
        extra = {} if loss_weights is None else {"loss_weights": loss_weights}
        got = [grad_of(lambda x, **kw: calculate_loss(fn, logits=x, labels=labels.clone(), num_label_tokens=11,
                                                      **extra), logits)
               for fn in (AutoModelObjectiveLoss(), MaskedCrossEntropy())]
        torch.testing.assert_close(got[0][0], got[1][0], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(got[0][1], got[1][1], rtol=1e-5, atol=1e-8)


def test_reduction_none_is_per_token_like_masked_cross_entropy():
    logits, labels, mask, _ = batch(torch.float32)
    ours, _ = grad_of(AutoModelObjectiveLoss(reduction="none"), logits, labels.clone(), mask=mask)
    theirs, _ = grad_of(MaskedCrossEntropy(reduction="none"), logits, labels.clone(), mask=mask.clone())
    assert ours.shape == theirs.shape == (B * S,)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def core_reference(name, args, logits, labels, mask, ignore_index=-100):
    """Per-token outputs of the project's core on the same tokens (mask and dataset padding as ignored)."""
    labels = labels.masked_fill(labels == -100, ignore_index).masked_fill(mask == 0, ignore_index)
    x = logits.clone().requires_grad_()
    out = vocab_parallel_objective(x, labels, module.get_objective(name, **args), ignore_index=ignore_index,
                                   inplace_backward=False)
    return x, out, labels != ignore_index


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name,args", OBJECTIVES, ids=lambda v: v if isinstance(v, str) else "")
def test_every_objective_equals_the_core(name, args, dtype):
    args = {**THRESHOLD.get(name, {}), **args}
    logits, labels, mask, weights = batch(dtype, seed=1)
    x, out, valid = core_reference(name, args, logits, labels, mask)
    n_valid, n_kept = int(valid.sum()), int(out.kept.sum())
    assert n_kept > 0
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=2 ** -7, atol=1e-6)

    # sum over the step's supervised tokens with AutoModel's global count, one micro-batch: the
    # paper's mean over kept tokens, as the core's nn.Module computes it
    paper = module.ObjectiveLoss(name, args)
    y = logits.clone().requires_grad_()
    expected = paper(y, labels.masked_fill(mask == 0, -100))
    expected.backward()
    ours = AutoModelObjectiveLoss(name, args)
    value, grad = grad_of(ours, logits, labels, mask=mask, num_label_tokens=n_valid)
    torch.testing.assert_close(value, expected.detach(), **tol)
    torch.testing.assert_close(grad.float(), y.grad.float(), **tol)

    # the other reductions against the core's per-token loss
    (out.loss * weights).sum().backward()
    value, grad = grad_of(ours, logits, labels, mask=mask, loss_weights=weights)
    torch.testing.assert_close(value, (out.loss * weights).sum().detach(), **tol)
    torch.testing.assert_close(grad.float(), x.grad.float(), **tol)
    value, _ = grad_of(AutoModelObjectiveLoss(name, args, reduction="mean"), logits, labels, mask=mask)
    torch.testing.assert_close(value, out.loss.sum().detach() / n_kept, **tol)

    # metrics of the call
    m = ours.last_metrics
    assert int(m["kept_tokens"]) == n_kept and int(m["label_tokens"]) == n_valid
    torch.testing.assert_close(m["kept_fraction"], torch.tensor(n_kept / n_valid))
    torch.testing.assert_close(m["mean_prob"], out.prob[valid].mean().float(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["neg_p_threshold", "nll_threshold"])
def test_threshold_rule_under_gradient_accumulation(name):
    """Two micro-batches, global count over both: each returns its kept mean times its label share."""
    args = {"threshold": 0.03}
    loss_fn = AutoModelObjectiveLoss(name, args)
    parts = [batch(torch.float32, seed=s) for s in (4, 5)]
    counts = [int((labels != -100).sum()) for _, labels, _, _ in parts]
    total = 0.0
    for (logits, labels, _, _), n in zip(parts, counts):
        value, _ = grad_of(loss_fn, logits, labels, num_label_tokens=sum(counts))
        kept_mean = module.ObjectiveLoss(name, args)(logits, labels)
        torch.testing.assert_close(value, kept_mean * n / sum(counts), rtol=1e-6, atol=1e-7)
        total += value
    assert torch.isfinite(total)


def test_nothing_kept_gives_zero_and_zero_gradient():
    logits, labels, _, _ = batch(torch.float32)
    loss_fn = AutoModelObjectiveLoss("neg_p_threshold", {"threshold": 1.0})
    value, grad = grad_of(loss_fn, logits, labels, num_label_tokens=10)
    assert value.item() == 0.0 and grad.abs().max().item() == 0.0
    assert loss_fn.last_metrics["kept_fraction"].item() == 0.0
    value, grad = grad_of(AutoModelObjectiveLoss(), logits, labels, num_label_tokens=0)
    assert value.item() == 0.0 and grad.abs().max().item() == 0.0


def test_arguments_automodel_refuses_are_refused_alike():
    logits, labels, _, weights = batch(torch.float32)
    for ours, theirs in ((AutoModelObjectiveLoss(reduction="mean"), MaskedCrossEntropy(reduction="mean")),):
        for kwargs in ({"loss_weights": weights}, {"num_label_tokens": 3}):
            with pytest.raises(ValueError):
                theirs(logits, labels.clone(), **kwargs)
            with pytest.raises(ValueError):
                ours(logits, labels.clone(), **kwargs)
    with pytest.raises(ValueError, match="loss_weights.shape"):
        AutoModelObjectiveLoss()(logits, labels, loss_weights=weights[:, :3])
    with pytest.raises(ValueError, match="reduction"):
        AutoModelObjectiveLoss(reduction="avg")
    with pytest.raises(ValueError, match="unknown objective"):
        AutoModelObjectiveLoss("neg_q")


def test_labels_are_not_written_to():
    logits, labels, mask, _ = batch(torch.float32)
    before = labels.clone()
    AutoModelObjectiveLoss(ignore_index=5)(logits, labels, mask=mask)
    assert torch.equal(labels, before)


# -- the fused output layer ----------------------------------------------------------------------


def linear_batch(dtype=torch.float32, seed=2):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, S, H, generator=g).to(dtype)
    weight = (torch.randn(V, H, generator=g) / H ** 0.5).to(dtype)
    _, labels, _, weights = batch(torch.float32, seed=seed)
    return hidden, weight, labels, weights


def fused_grads(loss_fn, hidden, weight, labels, **kwargs):
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    value = calculate_loss(loss_fn, logits=None, hidden_states=h, labels=labels.clone(), lm_weight=w, model=None,
                           **kwargs)
    value.backward()
    return value.detach(), h.grad, w.grad


def unfused_grads(loss_fn, hidden, weight, labels, **kwargs):
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    value = calculate_loss(loss_fn, logits=h @ w.t(), labels=labels.clone(), **kwargs)
    value.backward()
    return value.detach(), h.grad, w.grad


def test_fused_class_takes_automodels_linear_route():
    assert issubclass(AutoModelLinearObjectiveLoss, LinearCrossEntropy)
    assert not isinstance(AutoModelObjectiveLoss(), LinearCrossEntropy)


@pytest.mark.parametrize("weights", [False, True])
def test_fused_nll_equals_masked_cross_entropy_on_the_logits(weights):
    hidden, weight, labels, w = linear_batch()
    extra = {"num_label_tokens": 13, **({"loss_weights": w} if weights else {})}
    got = fused_grads(AutoModelLinearObjectiveLoss(chunk_vocab=8), hidden, weight, labels, **extra)
    ref = unfused_grads(MaskedCrossEntropy(), hidden, weight, labels, **extra)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,args", OBJECTIVES, ids=lambda v: v if isinstance(v, str) else "")
def test_fused_equals_unfused_for_every_objective(name, args):
    args = {**THRESHOLD.get(name, {}), **args}
    hidden, weight, labels, w = linear_batch(seed=6)
    fused = AutoModelLinearObjectiveLoss(name, args, chunk_vocab=10)
    plain = AutoModelObjectiveLoss(name, args)
    got = fused_grads(fused, hidden, weight, labels, num_label_tokens=17, loss_weights=w)
    ref = unfused_grads(plain, hidden, weight, labels, num_label_tokens=17, loss_weights=w)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert fused.last_metrics["kept_tokens"] == plain.last_metrics["kept_tokens"]
