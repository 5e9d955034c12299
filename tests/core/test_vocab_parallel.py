import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_beyond_nll import FAMILIES, get_objective, vocab_parallel_objective
from nemo_beyond_nll.core import passes

from ..reference import reference_objective

# Thresholds near the median p of the random logits below, so both sides of the mask are exercised.
OBJECTIVES = ["nll", "neg_p", "neg_p_power", "GeneralFamily-0.5", "OnlyTopP-0.02", "OnlyBottomP-0.02",
              "OnlyTopLogP-0.02", "OnlyBottomLogP-0.02", "dft",
              "log_one_minus_p", "UnlikehoodTop-0.02", "UnlikehoodBottom-0.02", "adaptive_power"]


def make_batch(n=64, v=96, dtype=torch.float64, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    target = torch.randint(0, v, (n,), generator=g)
    target[::7] = -100
    return logits, target


def compare(logits, target, name, dtype, rtol, atol):
    obj = get_objective(name)
    upstream = torch.rand(target.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref_in = logits.detach().double().requires_grad_()
    ref_loss, ref_prob, ref_kept = reference_objective(ref_in, target, obj)
    (ref_grad,) = torch.autograd.grad((ref_loss * upstream).sum(), ref_in)

    x = logits.detach().to(dtype).requires_grad_()
    out = vocab_parallel_objective(x * 1, target, obj)  # `* 1`: the in-place backward writes into a temporary
    (out.loss * upstream.to(out.loss.dtype)).sum().backward()
    assert torch.equal(out.kept, ref_kept)
    assert out.loss.dtype == out.prob.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert not out.prob.requires_grad and out.loss.requires_grad
    torch.testing.assert_close(out.loss.double(), ref_loss.detach(), rtol=rtol, atol=atol)
    torch.testing.assert_close(out.prob.double(), ref_prob, rtol=rtol, atol=atol)
    assert x.grad.dtype == dtype
    torch.testing.assert_close(x.grad.double(), ref_grad, rtol=rtol, atol=atol)
    # Tokens that are not kept get exactly zero gradient.
    assert torch.all(x.grad[~out.kept] == 0)
    return out


@pytest.mark.parametrize("name", OBJECTIVES)
def test_matches_closed_form_fp64(name):
    logits, target = make_batch()
    out = compare(logits, target, name, torch.float64, rtol=1e-10, atol=1e-12)
    if get_objective(name).is_thresholded:
        kept = out.kept[target != -100]
        assert kept.any() and not kept.all(), "threshold should split the tokens"


@pytest.mark.parametrize("name", OBJECTIVES)
def test_matches_closed_form_fp32(name):
    logits, target = make_batch()
    compare(logits, target, name, torch.float32, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_matches_closed_form_bf16(name):
    # The reference sees the same bf16-rounded logits; the softmax math is fp32 and the gradient
    # is rounded to bf16 once, so bf16's resolution (2^-8 relative) bounds the difference.
    logits, target = make_batch()
    logits = logits.to(torch.bfloat16).double()
    compare(logits, target, name, torch.bfloat16, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("name", [n for n in OBJECTIVES if n not in ("dft", "adaptive_power")])
def test_gradcheck_fp64(name):
    # dft's gradient deliberately differs from the derivative of its value (stop-gradient on p), and
    # so does adaptive_power's (m is detached); the closed-form tests hold both to their intended gradient.
    logits, target = make_batch(n=6, v=9, scale=1.0)
    if get_objective(name).is_thresholded:
        name = name.replace("0.02", "0.1")
    logits.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: vocab_parallel_objective(z, target, name).loss, (logits,))


def test_ignore_index_and_all_ignored():
    logits, target = make_batch(n=8, v=10, dtype=torch.float32)
    target[:] = 5
    target[2] = 3
    out = vocab_parallel_objective(logits, target, "nll", ignore_index=5)
    assert out.kept.tolist() == [i == 2 for i in range(8)]
    assert out.prob[out.kept.logical_not()].eq(0).all()

    x = logits.clone().requires_grad_()
    out = vocab_parallel_objective(x * 1, torch.full((8,), -100), "neg_p_threshold")
    reduced = out.mean_over_kept()
    reduced.backward()
    assert reduced.item() == 0 and not out.kept.any()
    assert torch.isfinite(x.grad).all() and x.grad.eq(0).all()


def test_mean_over_kept_divides_by_kept_count():
    logits, target = make_batch(n=40, v=12, dtype=torch.float64, scale=2.0)
    out = vocab_parallel_objective(logits, target, "OnlyTopP-0.1")
    expected = out.loss[out.kept].sum() / out.kept.sum()
    assert 0 < out.kept.sum() < (target != -100).sum()
    torch.testing.assert_close(out.mean_over_kept(), expected)


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_logits_stay_finite(name, dtype):
    n, v = 6, 50
    logits = torch.zeros(n, v)
    logits[0] = torch.linspace(-1e4, 1e4, v)  # target far below the max: p underflows to 0
    logits[1, :] = float("-inf")
    logits[1, 3] = 0.0  # every other id impossible: p = 1 exactly
    logits[2] = 3e4  # all equal and huge
    logits[3, ::2] = float("-inf")  # half the vocabulary masked
    logits[4] = torch.linspace(-1e4, 1e4, v)
    logits[5] = -3e4
    target = torch.tensor([0, 3, 7, 1, v - 1, 2])
    x = logits.to(dtype).requires_grad_()
    out = vocab_parallel_objective(x * 1, target, name)
    out.loss.sum().backward()
    assert torch.isfinite(out.loss).all() and torch.isfinite(out.prob).all()
    assert torch.isfinite(x.grad).all()
    assert out.prob[1].item() == 1.0 and out.prob[0].item() == 0.0
    assert abs(out.prob[3].item() - 1 / 25) < 1e-6  # 25 ids left, all equal


def near_one(dtype, one_minus_p, v=8):
    """log_one_minus_p on two rows whose target (id 3) has p = 1 - one_minus_p, and the fp64 reference on
    the same (rounded) logits. The target is the row max, so the log-sum-exp is near 0 and fp32 resolves
    1 - p to about its eps."""
    c = math.log(one_minus_p / ((v - 1) * (1 - one_minus_p)))
    logits = torch.full((2, v), c, dtype=torch.float64)
    logits[:, 3] = 0.0
    logits, target = logits.to(dtype), torch.tensor([3, 3])
    obj = get_objective("log_one_minus_p")
    ref_in = logits.double().clone().requires_grad_()
    ref_loss, ref_prob, _ = reference_objective(ref_in, target, obj)
    ref_loss.sum().backward()
    x = logits.clone().requires_grad_()
    out = vocab_parallel_objective(x * 1, target, obj)
    out.loss.sum().backward()
    assert torch.isfinite(out.loss).all() and torch.isfinite(x.grad).all()
    return out.loss.double(), x.grad.double(), ref_loss.detach(), ref_in.grad, ref_prob


def test_log_one_minus_p_at_p_one_minus_1e7_fp64_equals_reference():
    loss, grad, ref_loss, ref_grad, _ = near_one(torch.float64, 1e-7)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-8, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("one_minus_p", [1e-3, 1e-4])
def test_log_one_minus_p_near_one_equals_reference_where_fp32_resolves_it(dtype, one_minus_p):
    # fp32 resolves 1 - p to about eps (1.2e-7): relative error eps / (1 - p) in value and weight.
    loss, grad, ref_loss, ref_grad, _ = near_one(dtype, one_minus_p)
    rtol = 10 * torch.finfo(torch.float32).eps / one_minus_p + (2**-8 if dtype == torch.bfloat16 else 0)
    torch.testing.assert_close(loss, ref_loss, rtol=rtol, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_log_one_minus_p_at_p_one_minus_1e7_is_finite_and_floored(dtype):
    """1 - p = 1e-7 is below fp32's eps: the computed 1 - p is rounding noise, and the argument sits at
    the floor. Value: the reference formula with 1 - p held at eps. Gradient: the floor's weight p / eps
    on (softmax - onehot), exact on the other ids; on the target, softmax - 1 is only known to eps, so
    the gradient there is within one weight * eps (<= 1) of it."""
    eps = torch.finfo(torch.float32).eps
    loss, grad, _, _, ref_prob = near_one(dtype, 1e-7)
    assert (1 - ref_prob < eps).all()
    torch.testing.assert_close(loss, torch.full_like(loss, math.log(eps)), rtol=1e-6, atol=0)
    weight = ref_prob / eps
    softmax_others = (1 - ref_prob) / 7
    others = torch.arange(8) != 3
    bf16_rounding = 2**-8 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(grad[:, others], (weight * softmax_others)[:, None].expand(2, 7),
                               rtol=bf16_rounding, atol=0)
    assert ((grad[:, 3] - weight * (ref_prob - 1)).abs() <= weight * eps).all()


def test_out_of_vocabulary_target_raises_and_can_be_skipped():
    logits, target = make_batch(n=4, v=10, dtype=torch.float32)
    target[1] = 10
    with pytest.raises(ValueError, match=r"target id 10 is outside the vocabulary \[0, 10\)"):
        vocab_parallel_objective(logits, target, "nll")
    target[1] = -3
    with pytest.raises(ValueError, match="target id -3"):
        vocab_parallel_objective(logits, target, "nll")
    target[1] = 2
    vocab_parallel_objective(logits, target, "nll", check_targets=False)


def test_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match="disagree"):
        vocab_parallel_objective(torch.zeros(3, 4, 5), torch.zeros(3, 5, dtype=torch.long), "nll")
    with pytest.raises(ValueError, match="floating point"):
        vocab_parallel_objective(torch.zeros(3, 5, dtype=torch.long), torch.zeros(3, dtype=torch.long), "nll")
    with pytest.raises(ValueError, match="unknown objective"):
        vocab_parallel_objective(torch.zeros(3, 5), torch.zeros(3, dtype=torch.long), "nope")
    for dtype in (torch.float32, torch.bool):  # torch's own error would come from gather(), unnamed
        with pytest.raises(ValueError, match=f"target must hold integer token ids, got {dtype}"):
            vocab_parallel_objective(torch.zeros(3, 5), torch.zeros(3, dtype=dtype), "nll")
    for dtype in (torch.int32, torch.int64):
        assert vocab_parallel_objective(torch.zeros(3, 5), torch.zeros(3, dtype=dtype), "nll").loss.shape == (3,)


def test_batch_shapes_are_kept():
    logits, target = make_batch(n=24, v=11, dtype=torch.float32)
    flat = vocab_parallel_objective(logits, target, "neg_p")
    shaped = vocab_parallel_objective(logits.view(2, 3, 4, 11), target.view(2, 3, 4), "neg_p")
    assert shaped.loss.shape == shaped.prob.shape == shaped.kept.shape == (2, 3, 4)
    torch.testing.assert_close(shaped.loss.reshape(-1), flat.loss)


def test_only_the_logits_are_saved_and_backward_writes_into_them():
    """Memory: between forward and backward only the logits themselves are logits-sized."""
    n, v = 32, 64
    for dtype in (torch.bfloat16, torch.float32):
        logits = torch.randn(n, v, dtype=dtype, requires_grad=True)
        x = logits * 1
        out = vocab_parallel_objective(x, torch.randint(0, v, (n,)), "neg_p")
        node = out.loss.grad_fn
        while not hasattr(node, "saved_tensors"):  # past the reshape views
            node = node.next_functions[0][0]
        saved = node.saved_tensors
        big = [t for t in saved if t.numel() >= n * v]
        assert len(big) == 1 and big[0].data_ptr() == x.data_ptr()
        assert all(t.numel() <= n for t in saved if t is not big[0])
        captured = {}
        x.register_hook(lambda g: captured.update(ptr=g.data_ptr()))
        out.loss.sum().backward()
        assert captured["ptr"] == x.data_ptr()


def test_second_inplace_backward_raises_clearly():
    x = torch.randn(4, 8, requires_grad=True)
    out = vocab_parallel_objective(x * 1, torch.tensor([1, 2, 3, 4]), "neg_p")
    out.loss.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        out.loss.sum().backward()


def test_out_of_place_backward_leaves_logits_intact_and_can_repeat():
    x = torch.randn(4, 8, requires_grad=True)
    y = x * 1
    before = y.detach().clone()
    out = vocab_parallel_objective(y, torch.tensor([1, 2, 3, 4]), "neg_p", inplace_backward=False)
    out.loss.sum().backward(retain_graph=True)
    first = x.grad.clone()
    out.loss.sum().backward()
    torch.testing.assert_close(x.grad, 2 * first)
    assert torch.equal(y.detach(), before)


def shard_merge(logits, target, tp):
    """The TP algorithm in one process: per-shard stats, stacked as the all-gather would, merged."""
    v_local = logits.shape[-1] // tp
    stats = []
    for rank in range(tp):
        local = target - rank * v_local
        owned = (local >= 0) & (local < v_local)
        shard = logits[:, rank * v_local:(rank + 1) * v_local]
        stats.append(passes.local_row_stats(shard, torch.where(owned, local, 0), owned))
    return passes.merge_row_stats(torch.stack(stats))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 20),
    v_local=st.integers(1, 40),
    tp=st.sampled_from([1, 2, 3, 4, 8]),
    scale=st.floats(0.1, 50.0),
    seed=st.integers(0, 2**16),
    masked=st.booleans(),
)
def test_sharded_merge_equals_whole_vocab_logsumexp(n, v_local, tp, scale, seed, masked):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, v_local * tp, generator=g, dtype=torch.float64) * scale
    if masked:  # whole shards of -inf, as vocabulary padding gives
        logits[:, :v_local] = float("-inf")
    target = torch.randint(v_local if masked and tp > 1 else 0, v_local * tp, (n,), generator=g)
    lse, target_logit = shard_merge(logits, target, tp)
    torch.testing.assert_close(lse, torch.logsumexp(logits, dim=-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(target_logit, logits.gather(1, target[:, None]).squeeze(1))


def test_non_finite_logits_today_and_with_check_finite():
    import math

    from nemo_beyond_nll import ObjectiveLoss

    logits = torch.randn(2, 3, 16)
    target = torch.randint(0, 16, (2, 3))
    target[1, 2] = -100
    logits[1, 0, 5] = math.nan
    # Without the check: the row's loss and gradient are NaN, the other rows unaffected.
    x = logits.clone().requires_grad_()
    out = vocab_parallel_objective(x * 1, target, "nll")
    out.loss.sum().backward()
    assert torch.isnan(out.loss[1, 0]) and torch.isfinite(out.loss[0]).all()
    assert torch.isnan(x.grad[1, 0]).all() and torch.isfinite(x.grad[0]).all()
    with pytest.raises(ValueError, match=r"^non-finite logits in row 3 \(the first of 1 of 6 rows\): log-sum-exp nan") as err:
        vocab_parallel_objective(logits.clone(), target, "nll", check_finite=True)
    assert "tensor-parallel rank 0 of 1" in str(err.value) and "\n" not in str(err.value)
    # -inf at a non-target token is a mask, allowed; +inf anywhere, or -inf at the target, is not.
    masked = torch.randn(1, 16)
    masked[0, 3] = -math.inf
    assert torch.isfinite(vocab_parallel_objective(masked, torch.tensor([0]), "nll", check_finite=True).loss).all()
    for column, value in ((3, math.inf), (0, -math.inf)):
        bad = torch.randn(1, 16)
        bad[0, column] = value
        with pytest.raises(ValueError, match="row 0"):
            vocab_parallel_objective(bad, torch.tensor([0]), "neg_p", check_finite=True)
    # an ignored token's row: the target is not checked, the rest of the row is
    ignored = torch.randn(1, 16)
    ignored[0, 0] = -math.inf
    assert vocab_parallel_objective(ignored, torch.tensor([-100]), "nll", check_finite=True).loss.item() == 0.0
    with pytest.raises(ValueError, match="row 3"):
        ObjectiveLoss("nll", check_finite=True)(logits.clone(), target)
