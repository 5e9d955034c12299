import pytest
import torch

from nemo_beyond_nll.megatron import install, installed_objective, last_output, uninstall
from nemo_beyond_nll.engines.cpu.runtime import causal_mask, init_megatron_cpu
from nemo_beyond_nll.engines.cpu.models import TinyGPTConfig, build_tiny_gpt

CFG = TinyGPTConfig(vocab_size=64, seq_length=8, hidden_size=32, num_attention_heads=4, ffn_hidden_size=64)


@pytest.fixture(scope="module")
def model():
    init_megatron_cpu(tensor_parallel=1)
    return build_tiny_gpt(CFG)


def forward(model, labels):
    tokens = torch.arange(16).view(2, 8) % CFG.vocab_size
    position_ids = torch.arange(8)[None].expand(2, -1)
    return model(tokens, position_ids, causal_mask(8), labels=labels)


def test_install_replaces_and_uninstall_restores(model):
    labels = torch.randint(0, CFG.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    megatron_loss = forward(model, labels).detach()
    assert installed_objective(model) is None

    objective = install(model, "OnlyTopP-0.01")
    assert installed_objective(model) == objective
    loss = forward(model, labels).detach()
    out = last_output(model)
    assert loss.shape == labels.shape == out.prob.shape == out.kept.shape
    # 1 - p on kept tokens, where -log p is Megatron's per-token loss.
    p = torch.exp(-megatron_loss)
    torch.testing.assert_close(out.prob, p, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss, torch.where(p >= 0.01, 1 - p, 0.0), rtol=1e-5, atol=1e-7)

    install(model, "nll")
    torch.testing.assert_close(forward(model, labels).detach(), megatron_loss, rtol=1e-6, atol=1e-6)
    uninstall(model)
    assert installed_objective(model) is None
    assert torch.equal(forward(model, labels).detach(), megatron_loss)


def test_last_output_carries_adaptive_powers_m(model):
    """m is the mean p of the forward's non-ignored labels; the loss is (1 - p^m)/m there, 0 elsewhere."""
    labels = torch.randint(0, CFG.vocab_size, (2, 8), generator=torch.Generator().manual_seed(1))
    labels[0, :3] = -100
    install(model, "adaptive_power")
    try:
        loss = forward(model, labels).detach()
        out = last_output(model)
        valid = labels != -100
        assert out.power.dim() == 0 and out.power.item() > 0
        torch.testing.assert_close(out.power, out.prob[valid].mean(), rtol=1e-6, atol=0)
        m = out.power.item()
        torch.testing.assert_close(loss, torch.where(valid, (1 - out.prob**m) / m, 0.0), rtol=1e-5, atol=1e-6)
        install(model, "neg_p")
        forward(model, labels)
        assert last_output(model).power is None
    finally:
        uninstall(model)


def test_install_rejects_bad_objective_and_models(model):
    with pytest.raises(ValueError, match="unknown objective"):
        install(model, "focal")
    with pytest.raises(ValueError, match="no Megatron-Core LanguageModule"):
        install(torch.nn.Linear(2, 2), "nll")


def test_install_on_wrappers_and_lists(model):
    wrapper = torch.nn.Sequential(model)
    install([wrapper], "neg_p")
    assert installed_objective(model).name == "neg_p"
    uninstall(wrapper)
    assert installed_objective(model) is None


def test_install_with_check_finite_names_the_bad_row(model):
    labels = torch.randint(0, CFG.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    install(model, "neg_p", check_finite=True)
    assert torch.isfinite(forward(model, labels)).all()
    output_layer = model.output_layer
    hook = output_layer.register_forward_hook(lambda m, i, out: (out[0].index_fill(0, torch.tensor([3]), float("nan")),
                                                                 *out[1:]))
    try:
        with pytest.raises(ValueError, match=r"^non-finite logits in row 6 \(the first of 2 of 16 rows\)"):
            forward(model, labels)  # logits [s, b, V]: sequence position 3 of both batch rows
    finally:
        hook.remove()
        uninstall(model)
    with pytest.raises(ValueError, match="not available with fusion='linear'"):
        install(model, "nll", check_finite=True, fusion="linear")


@pytest.mark.parametrize("tp", [2, 4])
def test_gpt_model_tensor_parallel_equals_tp1(torchrun, tp):
    reports = torchrun("megatron/gpt_tp_worker.py", tp)
    assert [(r["tp"], r["objectives"], r["mtp_objectives"]) for r in reports] == [(tp, 8, 2)] * tp
