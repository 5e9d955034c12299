"""The Triton backend equals the torch backend: every objective family, fp32/bf16/fp64, odd vocab sizes.

Without a GPU the kernels run under TRITON_INTERPRET=1 (set in conftest.py) on CPU tensors; the spy
below proves that the kernels ran rather than the torch fallback. Sizes are tiny: the interpreter is slow.
"""

import pytest
import torch

from nemo_beyond_nll import get_objective, vocab_parallel_objective
from nemo_beyond_nll.core import triton_kernels
from nemo_beyond_nll.core.backends import BACKEND_ENV, resolve_backend

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
OBJECTIVES = ["nll", "neg_p", "neg_p_power", "GeneralFamily-0.5", "OnlyTopP-0.02", "OnlyBottomP-0.02",
              "OnlyTopLogP-0.02", "OnlyBottomLogP-0.02", "dft",
              "log_one_minus_p", "UnlikehoodTop-0.02", "UnlikehoodBottom-0.02", "adaptive_power"]
TOLERANCE = {torch.float64: (1e-12, 1e-14), torch.float32: (2e-5, 1e-6), torch.bfloat16: (1e-2, 4e-3)}


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts kernel launches, and shrinks the vocabulary block so that small rows span several blocks."""
    calls = {"row_stats": 0, "write_gradient": 0}
    for name in calls:
        original = getattr(triton_kernels, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(triton_kernels, name, spy)
    monkeypatch.setattr(triton_kernels, "MAX_BLOCK_V", 16)
    return calls


def make_batch(n=10, v=37, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g, dtype=torch.float64) * 3).to(dtype)
    target = torch.randint(0, v, (n,), generator=g)
    target[::4] = -100
    return logits.to(DEVICE), target.to(DEVICE)


def run(logits, target, name, backend, **kwargs):
    x = logits.detach().clone().requires_grad_()
    out = vocab_parallel_objective(x * 1, target, name, backend=backend, **kwargs)
    upstream = torch.linspace(0.5, 1.5, target.numel(), device=DEVICE, dtype=out.loss.dtype).view_as(target)
    (out.loss * upstream).sum().backward()
    return out, x.grad


def assert_same(a, b, dtype):
    rtol, atol = TOLERANCE[dtype]
    torch.testing.assert_close(a.double(), b.double(), rtol=rtol, atol=atol)


def compare_backends(logits, target, name, dtype, **kwargs):
    ref, ref_grad = run(logits, target, name, "torch", **kwargs)
    out, grad = run(logits, target, name, "triton", **kwargs)
    assert torch.equal(out.kept, ref.kept)
    assert out.loss.dtype == ref.loss.dtype and grad.dtype == ref_grad.dtype == dtype
    assert_same(out.loss, ref.loss, dtype)
    assert_same(out.prob, ref.prob, dtype)
    assert_same(grad, ref_grad, dtype)
    return out


def test_kernels_run_interpreted_without_gpu():
    assert DEVICE.type == "cuda" or triton_kernels.INTERPRETED, "TRITON_INTERPRET=1 was not set before import"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", OBJECTIVES)
def test_triton_equals_torch(kernel_calls, name, dtype):
    logits, target = make_batch(dtype=dtype)
    out = compare_backends(logits, target, name, dtype)
    assert kernel_calls == {"row_stats": 1, "write_gradient": 1}
    if get_objective(name).is_thresholded:
        kept = out.kept[target != -100]
        assert kept.any() and not kept.all(), "threshold should split the tokens"


@pytest.mark.parametrize("v", [1, 15, 16, 17, 50])
def test_vocab_sizes_around_the_block(kernel_calls, v):
    logits, target = make_batch(n=5, v=v, dtype=torch.float64, seed=v)
    compare_backends(logits, target.clamp(max=v - 1), "neg_p", torch.float64)
    assert kernel_calls["row_stats"] == kernel_calls["write_gradient"] == 1


def test_custom_ignore_index(kernel_calls):
    logits, target = make_batch(n=6, v=20)
    target[target == -100] = 3
    out = compare_backends(logits, target, "nll", torch.float32, ignore_index=3)
    assert not out.kept[0] and out.prob[0] == 0 and out.kept[1]


def test_extreme_rows_stay_finite(kernel_calls):
    v = 40
    logits = torch.zeros(5, v)
    logits[0] = torch.linspace(-1e4, 1e4, v)  # p underflows to 0
    logits[1, :] = float("-inf")
    logits[1, 3] = 0.0  # p = 1 exactly
    logits[2, ::2] = float("-inf")  # half the vocabulary masked, across blocks
    logits[3, :20] = float("-inf")  # the first whole block masked
    logits[4] = 3e4
    target = torch.tensor([0, 3, 1, 30, 7])
    for dtype in (torch.float32, torch.bfloat16):
        x = logits.to(device=DEVICE, dtype=dtype)
        out = compare_backends(x, target.to(DEVICE), "neg_p", dtype)
        assert out.prob[1] == 1.0 and out.prob[0] == 0.0
        assert abs(out.prob[2].item() - 1 / 20) < 1e-6 and abs(out.prob[3].item() - 1 / 20) < 1e-6


def test_inplace_backward_writes_into_the_logits(kernel_calls):
    logits, target = make_batch(dtype=torch.bfloat16)
    x = logits.clone().requires_grad_()
    y = x * 1
    captured = {}
    y.register_hook(lambda g: captured.update(ptr=g.data_ptr()))
    vocab_parallel_objective(y, target, "neg_p", backend="triton").loss.sum().backward()
    assert captured["ptr"] == y.data_ptr()
    assert kernel_calls["write_gradient"] == 1


def test_backend_choice(monkeypatch, kernel_calls):
    logits, target = make_batch(n=3, v=8)
    assert resolve_backend(logits) == ("triton" if DEVICE.type == "cuda" else "torch")
    monkeypatch.setenv(BACKEND_ENV, "triton")
    assert resolve_backend(logits) == "triton"
    vocab_parallel_objective(logits, target, "nll")
    assert kernel_calls["row_stats"] == 1
    assert resolve_backend(logits, "torch") == "torch"  # the keyword wins over the environment
    monkeypatch.setenv(BACKEND_ENV, "cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        vocab_parallel_objective(logits, target, "nll")
    with pytest.raises(ValueError, match="last dimension is contiguous"):
        resolve_backend(torch.zeros(8, 3, device=DEVICE).t(), "triton")


def test_tensor_parallel_triton_equals_whole_vocabulary(torchrun):
    reports = torchrun("core/vocab_parallel_tp_worker.py", 2, "triton")
    assert [(r["tp"], r["objectives"], r["backend"]) for r in reports] == [(2, 13, "triton")] * 2
    assert all(r["kernel_launches"] > 0 for r in reports)
