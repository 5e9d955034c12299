"""adaptive_power: (1 - p^m)/m with m the call's mean p over supervised tokens, detached.

The closed-form, sharded, Triton, fused and framework checks run through the shared objective lists;
these tests pin what is particular to m."""

import math

import pytest
import torch

from nemo_beyond_nll import get_objective, vocab_parallel_linear_objective, vocab_parallel_objective

from ..reference import reference_power


def batch(n=12, v=10, seed=0, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    target = torch.randint(0, v, (n,), generator=g)
    target[::5] = -100
    upstream = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    return logits, target, upstream


def frozen_m_value(logits, target, upstream, m):
    """sum of upstream * (1 - p^m)/m over the supervised tokens, m a plain number (no gradient through it)."""
    valid = target != -100
    logp = torch.log_softmax(logits, dim=-1).gather(-1, torch.where(valid, target, 0)[:, None]).squeeze(-1)
    return (upstream * torch.where(valid, -torch.expm1(m * logp) / m, 0.0)).sum()


def implementation(logits, target, upstream, **args):
    x = logits.clone().requires_grad_()
    out = vocab_parallel_objective(x, target, get_objective("adaptive_power", **args))
    (out.loss * upstream.to(out.loss.dtype)).sum().backward()
    return out, x.grad


def test_gradient_is_the_finite_difference_of_the_value_with_m_held_constant():
    logits, target, upstream = batch(v=6, scale=1.0)
    out, grad = implementation(logits, target, upstream)
    m = out.power.item()
    assert 0.05 < m < 0.5  # a real interpolation, neither end of the family
    torch.testing.assert_close((out.loss * upstream).sum(), frozen_m_value(logits, target, upstream, m),
                               rtol=1e-12, atol=0)
    h = 1e-6
    fd = torch.zeros_like(logits)
    for idx in range(logits.numel()):
        step = torch.zeros(logits.numel(), dtype=logits.dtype)
        step[idx] = h
        step = step.view_as(logits)
        fd.view(-1)[idx] = (frozen_m_value(logits + step, target, upstream, m)
                            - frozen_m_value(logits - step, target, upstream, m)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-9)


def test_no_gradient_flows_through_m():
    """The finite difference of the value with m moving too differs from the gradient: m is detached."""
    logits, target, upstream = batch()
    _, grad = implementation(logits, target, upstream)

    def moving_m(z):
        return (vocab_parallel_objective(z, target, "adaptive_power").loss * upstream).sum()

    h, idx = 1e-6, (1, 3)
    step = torch.zeros_like(logits)
    step[idx] = h
    fd = (moving_m(logits + step) - moving_m(logits - step)) / (2 * h)
    assert abs(fd.item() - grad[idx].item()) > 1e-4 * abs(grad[idx].item())


def test_gradient_is_p_to_the_m_times_the_nll_gradient():
    logits, target, upstream = batch()
    out, grad = implementation(logits, target, upstream)
    _, nll_grad = implementation_nll(logits, target, upstream)
    valid = target != -100
    scale = torch.where(valid, out.prob ** out.power, 0.0)
    torch.testing.assert_close(grad, scale[:, None] * nll_grad, rtol=1e-12, atol=1e-15)


def implementation_nll(logits, target, upstream):
    x = logits.clone().requires_grad_()
    out = vocab_parallel_objective(x, target, "nll")
    (out.loss * upstream).sum().backward()
    return out, x.grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_m_is_the_mean_p_of_the_supervised_tokens_and_ignored_tokens_do_not_move_it(dtype):
    logits, target, upstream = batch(dtype=dtype)
    valid = target != -100
    out, grad = implementation(logits, target, upstream)
    assert out.power.dim() == 0 and not out.power.requires_grad
    torch.testing.assert_close(out.power, out.prob[valid].mean(), rtol=1e-6, atol=0)
    torch.testing.assert_close(out.power.double(), reference_power(torch.softmax(logits.double(), -1).gather(
        -1, torch.where(valid, target, 0)[:, None]).squeeze(-1), valid, get_objective("adaptive_power")),
        rtol=1e-5 if dtype != torch.bfloat16 else 1e-2, atol=0)

    # other logits and targets on the ignored rows: the same m, losses and gradients elsewhere
    moved = logits.clone()
    moved[~valid] = (torch.randn(int((~valid).sum()), logits.shape[1], dtype=torch.float64) * 9).to(dtype)
    moved_out, moved_grad = implementation(moved, target, upstream)
    assert torch.equal(moved_out.power, out.power)
    assert torch.equal(moved_out.loss, out.loss) and torch.equal(moved_grad[valid], grad[valid])

    # the same rows supervised do move it
    unmasked = target.clone()
    unmasked[~valid] = 0
    assert implementation(moved, unmasked, upstream)[0].power != out.power


def targets_at(p, v=64, n=24):
    """fp64 logits whose targets (id 5) have probability exactly p per row, the other ids equal."""
    c = torch.log((1 / p - 1) / (v - 1))
    logits = c[:, None].expand(n, v).clone()
    logits[:, 5] = 0.0
    return logits, torch.full((n,), 5)


def test_where_the_model_knows_little_it_trains_like_nll():
    """Targets at p ~ 1e-4: m ~ 1e-4 and w = p^m = exp(m log p) > 0.999, so the gradient is nll's to 1e-3."""
    p = torch.linspace(0.8e-4, 1.2e-4, 24, dtype=torch.float64)
    logits, target = targets_at(p)
    upstream = torch.ones(24, dtype=torch.float64)
    out, grad = implementation(logits, target, upstream, min_power=1e-6)
    _, nll_grad = implementation_nll(logits, target, upstream)
    torch.testing.assert_close(out.power, p.mean(), rtol=1e-9, atol=0)
    torch.testing.assert_close(grad, nll_grad, rtol=1e-3, atol=0)
    assert not torch.allclose(grad, nll_grad, rtol=1e-4, atol=0)  # close to nll, not nll itself

    # with the default floor m = 1e-3: w = p^0.001, within 1 - (0.8e-4)^0.001 (1%) of nll's
    out, grad = implementation(logits, target, upstream)
    assert out.power.item() == pytest.approx(1e-3, rel=1e-12)
    torch.testing.assert_close(grad, (p ** 1e-3)[:, None] * nll_grad, rtol=1e-12, atol=0)


def test_where_the_model_knows_much_it_trains_like_neg_p():
    # p = 1 - 1e-6: m = 1 - 1e-6, the gradient is neg_p's to about 1e-6 relative (fp64)
    logits, target = targets_at(torch.full((24,), 1 - 1e-6, dtype=torch.float64))
    upstream = torch.linspace(0.5, 1.5, 24, dtype=torch.float64)
    out, grad = implementation(logits, target, upstream)
    neg_p_in = logits.clone().requires_grad_()
    neg_p = vocab_parallel_objective(neg_p_in, target, "neg_p")
    (neg_p.loss * upstream).sum().backward()
    assert 1 - 2e-6 < out.power.item() < 1
    torch.testing.assert_close(grad, neg_p_in.grad, rtol=1e-5, atol=0)
    torch.testing.assert_close(out.loss, neg_p.loss, rtol=1e-5, atol=0)

    # fp32 resolves p = 1 exactly: m is 1 and the objective is neg_p, bit for bit
    logits = torch.full((4, 16), -100.0)
    logits[:, 5] = 0.0
    target = torch.full((4,), 5)
    x, y = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    out = vocab_parallel_objective(x * 1, target, "adaptive_power")
    ref = vocab_parallel_objective(y * 1, target, "neg_p")
    out.loss.sum().backward()
    ref.loss.sum().backward()
    assert out.power.item() == 1.0
    assert torch.equal(out.loss, ref.loss) and torch.equal(x.grad, y.grad) and x.grad.abs().sum() > 0


def test_fused_linear_path_has_the_same_m():
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(10, 6, generator=g, dtype=torch.float64)
    weight = torch.randn(20, 6, generator=g, dtype=torch.float64)
    target = torch.randint(0, 20, (10,), generator=g)
    target[2] = -100
    fused = vocab_parallel_linear_objective(hidden, weight, target, "adaptive_power", chunk_vocab=7)
    plain = vocab_parallel_objective(hidden @ weight.t(), target, "adaptive_power")
    torch.testing.assert_close(fused.power, plain.power, rtol=1e-12, atol=0)
    assert math.isclose(plain.power.item(), plain.prob[target != -100].mean().item(), rel_tol=1e-12)


def test_batch_free_objectives_carry_no_power():
    logits, target, _ = batch()
    assert vocab_parallel_objective(logits, target, "neg_p_power").power is None
