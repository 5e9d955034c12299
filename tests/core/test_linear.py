"""The fused output layer + objective equals the matmul followed by vocab_parallel_objective."""

import pytest
import torch

from nemo_beyond_nll import get_objective, vocab_parallel_linear_objective, vocab_parallel_objective
from nemo_beyond_nll.core import triton_kernels
from nemo_beyond_nll.core.linear import default_chunk_vocab

OBJECTIVES = ["nll", "neg_p", "GeneralFamily-3", "OnlyTopP-0.02", "OnlyBottomLogP-0.02", "dft",
              "log_one_minus_p", "UnlikehoodTop-0.02", "adaptive_power"]
TOLERANCE = {torch.float64: (1e-10, 1e-12), torch.float32: (2e-5, 2e-6), torch.bfloat16: (2e-2, 2e-2)}


def make_inputs(n=13, h=8, v=29, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=torch.float64).to(dtype)
    weight = (torch.randn(v, h, generator=g, dtype=torch.float64) * 0.8).to(dtype)
    target = torch.randint(0, v, (n,), generator=g)
    target[::5] = -100
    upstream = torch.rand(n, generator=g, dtype=torch.float64)
    return hidden, weight, target, upstream


def unfused(hidden, weight, target, name, upstream, **kwargs):
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    out = vocab_parallel_objective(h @ w.t(), target, name, **kwargs)
    (out.loss * upstream.to(out.loss.dtype)).sum().backward()
    return out, h.grad, w.grad


def fused(hidden, weight, target, name, upstream, **kwargs):
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    out = vocab_parallel_linear_objective(h, w, target, name, **kwargs)
    (out.loss * upstream.to(out.loss.dtype)).sum().backward()
    return out, h.grad, w.grad


def assert_equal_paths(a, b, dtype):
    rtol, atol = TOLERANCE[dtype]
    (out_a, hidden_a, weight_a), (out_b, hidden_b, weight_b) = a, b
    assert torch.equal(out_a.kept, out_b.kept)
    for x, y in ((out_a.loss, out_b.loss), (out_a.prob, out_b.prob), (hidden_a, hidden_b), (weight_a, weight_b)):
        assert x.dtype == y.dtype
        torch.testing.assert_close(x.double(), y.double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", OBJECTIVES)
def test_fused_equals_unfused(name, dtype):
    inputs = make_inputs(dtype=dtype)
    ref = unfused(*inputs[:3], name, inputs[3])
    out = fused(*inputs[:3], name, inputs[3], chunk_vocab=8)  # 29 ids: blocks of 8, 8, 8, 5
    assert_equal_paths(out, ref, dtype)
    if get_objective(name).is_thresholded:
        kept = out[0].kept[inputs[2] != -100]
        assert kept.any() and not kept.all(), "threshold should split the tokens"


@pytest.mark.parametrize("chunk", [1, 5, 29, 100])
def test_block_size_does_not_change_the_result(chunk):
    inputs = make_inputs()
    assert_equal_paths(fused(*inputs[:3], "neg_p", inputs[3], chunk_vocab=chunk),
                       unfused(*inputs[:3], "neg_p", inputs[3]), torch.float64)


def test_gradcheck_fp64():
    hidden, weight, target, _ = make_inputs(n=5, h=3, v=7)
    hidden.requires_grad_()
    weight.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda h, w: vocab_parallel_linear_objective(h, w, target, "GeneralFamily-2", chunk_vocab=3).loss,
        (hidden, weight),
    )


def test_batch_shapes_and_ignore_index():
    hidden, weight, target, upstream = make_inputs(n=12)
    target[target == -100] = 7
    flat = vocab_parallel_linear_objective(hidden, weight, target, "nll", ignore_index=7)
    shaped = vocab_parallel_linear_objective(hidden.view(3, 4, -1), weight, target.view(3, 4), "nll", ignore_index=7)
    assert shaped.loss.shape == shaped.kept.shape == (3, 4)
    torch.testing.assert_close(shaped.loss.reshape(-1), flat.loss)
    assert torch.equal(flat.kept, target != 7) and flat.prob[target == 7].eq(0).all()


def test_no_logits_sized_tensor_is_saved():
    n, h, v = 64, 4, 256
    hidden, weight = torch.randn(n, h, requires_grad=True), torch.randn(v, h, requires_grad=True)
    out = vocab_parallel_linear_objective(hidden, weight, torch.randint(0, v, (n,)), "neg_p", chunk_vocab=32)
    node = out.loss.grad_fn
    while not hasattr(node, "saved_tensors"):
        node = node.next_functions[0][0]
    assert max(t.numel() for t in node.saved_tensors) == v * h  # the weight itself, nothing n * v


def test_only_the_needed_gradients(monkeypatch):
    hidden, weight, target, upstream = make_inputs()
    h = hidden.clone().requires_grad_()
    vocab_parallel_linear_objective(h, weight, target, "neg_p").loss.sum().backward()
    assert h.grad is not None and weight.grad is None


def test_triton_backend_inside_the_fused_path(monkeypatch):
    calls = []
    original = triton_kernels.write_gradient
    monkeypatch.setattr(triton_kernels, "write_gradient", lambda *a, **k: calls.append(1) or original(*a, **k))
    device = "cuda" if torch.cuda.is_available() else "cpu"  # without a GPU: the interpreter (conftest)
    inputs = [t.to(device) for t in make_inputs(n=6, v=21, dtype=torch.float32)]
    ref = unfused(*inputs[:3], "neg_p", inputs[3], backend="torch")
    out = fused(*inputs[:3], "neg_p", inputs[3], chunk_vocab=8, backend="triton")
    assert_equal_paths(out, ref, torch.float32)
    assert len(calls) == 3  # one launch per block of 8, 8, 5 ids


def test_default_block_size():
    assert default_chunk_vocab(2048, torch.float32, "cpu") == 2048  # 16 MiB on CPU
    assert default_chunk_vocab(8192, torch.bfloat16, "cuda") == 4096  # 64 MiB on GPU
    assert default_chunk_vocab(1 << 20, torch.float32, "cpu") == 256  # never below the minimum


def test_bad_inputs_raise():
    hidden, weight, target, _ = make_inputs()
    with pytest.raises(ValueError, match="weight_shard must be"):
        vocab_parallel_linear_objective(hidden, weight.t(), target, "nll")
    with pytest.raises(ValueError, match="hidden must be target's shape"):
        vocab_parallel_linear_objective(hidden, weight, target[:-1], "nll")
    with pytest.raises(ValueError, match="share one floating dtype"):
        vocab_parallel_linear_objective(hidden.float(), weight, target, "nll")
    with pytest.raises(ValueError, match="chunk_vocab must be a positive integer"):
        vocab_parallel_linear_objective(hidden, weight, target, "nll", chunk_vocab=0)
    with pytest.raises(ValueError, match="target id 29 is outside"):
        vocab_parallel_linear_objective(hidden, weight, torch.full_like(target, 29), "nll")


@pytest.mark.parametrize("tp", [2, 4])
def test_tensor_parallel_equals_whole_vocabulary(torchrun, tp):
    reports = torchrun("core/linear_tp_worker.py", tp)
    assert [(r["tp"], r["objectives"]) for r in reports] == [(tp, 9)] * tp


def test_float_targets_are_a_one_line_error():
    from nemo_beyond_nll.core.linear import vocab_parallel_linear_objective

    with pytest.raises(ValueError, match="target must hold integer token ids, got torch.float32"):
        vocab_parallel_linear_objective(torch.zeros(3, 4), torch.zeros(5, 4), torch.zeros(3), "nll")
