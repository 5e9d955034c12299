"""install(..., fusion="linear") on a real GPTModel: the same loss and gradients without logits."""

import pytest
import torch
from megatron.core.models.gpt import GPTModel

import nemo_beyond_nll.megatron.hook as hook
from nemo_beyond_nll.megatron import install, last_output, uninstall
from nemo_beyond_nll.engines.cpu.runtime import causal_mask, init_megatron_cpu
from nemo_beyond_nll.megatron.fused_output import fused_output_processor, uses_output_processor
from nemo_beyond_nll.engines.cpu.models import TinyGPTConfig, build_tiny_gpt

CFG = TinyGPTConfig(vocab_size=64, seq_length=8, hidden_size=32, num_attention_heads=4, ffn_hidden_size=64)


@pytest.fixture(scope="module")
def model():
    init_megatron_cpu(tensor_parallel=1)
    return build_tiny_gpt(CFG)


def inputs():
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, CFG.vocab_size, (2, 8), generator=g)
    labels = torch.randint(0, CFG.vocab_size, (2, 8), generator=g)
    return tokens, torch.arange(8)[None].expand(2, -1), causal_mask(8), labels


def loss_and_grads(model, **kwargs):
    model.zero_grad()
    loss = model(*inputs()[:3], labels=inputs()[3], **kwargs)
    (loss * torch.linspace(0.5, 1.5, loss.numel()).view_as(loss)).sum().backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_same(a, b):
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-6)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], rtol=1e-5, atol=1e-6, msg=name)


def test_fused_model_equals_unfused_and_never_runs_the_output_layer(model):
    install(model, "OnlyTopP-0.01")
    reference = loss_and_grads(model)
    reference_prob = last_output(model).prob

    install(model, "OnlyTopP-0.01", fusion="linear")
    matmuls = []
    handle = model.output_layer.register_forward_hook(lambda *a: matmuls.append(a[2]))
    fused = loss_and_grads(model)
    handle.remove()
    assert_same(fused, reference)
    torch.testing.assert_close(last_output(model).prob, reference_prob)
    if uses_output_processor(model):  # megatron-core 0.18+: the processor takes the layer's weight
        assert matmuls == []
    else:  # older: the output layer module is still called (its hooks run), but returns its input
        assert len(matmuls) == 1 and type(matmuls[0][0]).__name__ == "OutputLayerInput"

    logits = model(*inputs()[:3])  # without labels: plain logits
    assert logits.shape == (2, 8, CFG.vocab_size)
    uninstall(model)
    assert not {"_postprocess", "forward"} & set(vars(model)) and "forward" not in vars(model.output_layer)
    torch.testing.assert_close(model(*inputs()[:3]), logits)


def test_fusion_is_validated(model):
    with pytest.raises(ValueError, match="fusion must be one of"):
        install(model, "nll", fusion="logits")
    model.output_layer.gather_output = True
    try:
        with pytest.raises(ValueError, match="gathers its output"):
            install(model, "nll", fusion="linear")
    finally:
        model.output_layer.gather_output = False
    assert "_postprocess" not in vars(model)  # a refused install changes nothing


class ProcessorGPT(GPTModel):
    """GPTModel.forward with megatron-core 0.18+'s `output_processor` argument, on this megatron-core."""

    def forward(self, input_ids, position_ids, attention_mask, labels=None, output_processor=None):
        if output_processor is None:
            return super().forward(input_ids, position_ids, attention_mask, labels=labels)
        hidden = self.decoder(self.embedding(input_ids=input_ids, position_ids=position_ids), attention_mask)
        weight = self.shared_embedding_or_output_weight() if self.share_embeddings_and_output_weights else None
        return output_processor(
            hidden_states=hidden, output_layer=self.output_layer, output_weight=weight, labels=labels,
            loss_mask=None, input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
            runtime_gather_output=None, context=None, config=self.config,
            compute_language_model_loss=self.compute_language_model_loss,
        )


def test_output_processor_route_where_megatron_has_it(monkeypatch):
    init_megatron_cpu(tensor_parallel=1)
    model = build_tiny_gpt(CFG)
    install(model, "neg_p")
    reference = loss_and_grads(model)
    model.__class__ = ProcessorGPT
    assert uses_output_processor(model)
    install(model, "neg_p", fusion="linear")
    assert "forward" in vars(model) and "_postprocess" not in vars(model)
    used = []
    monkeypatch.setattr(hook, "vocab_parallel_linear_objective",
                        lambda *a, _f=hook.vocab_parallel_linear_objective, **k: used.append(1) or _f(*a, **k))
    assert_same(loss_and_grads(model), reference)
    assert used == [1]
    # A processor given by the caller is left alone.
    assert model(*inputs()[:3], labels=inputs()[3], output_processor=lambda **kw: "theirs") == "theirs"


def test_output_processor_gets_the_loss_from_the_installed_objective(model):
    install(model, "nll")
    reference = model(*inputs()[:3], labels=inputs()[3]).detach()
    hidden = torch.randn(8, 2, CFG.hidden_size)
    got = fused_output_processor(
        hidden_states=hidden, output_layer=model.output_layer, output_weight=None, labels=inputs()[3],
        compute_language_model_loss=model.compute_language_model_loss, loss_mask=None, context=None,
    )
    logits = hidden @ model.output_layer.weight.t()
    expected = torch.nn.functional.cross_entropy(logits.permute(1, 2, 0), inputs()[3], reduction="none")
    torch.testing.assert_close(got.detach(), expected, rtol=1e-5, atol=1e-6)
    assert got.shape == reference.shape


@pytest.mark.parametrize("tp", [2])
def test_fused_gpt_model_tensor_parallel_equals_unfused_tp1(torchrun, tp):
    reports = torchrun("megatron/gpt_fused_tp_worker.py", tp)
    assert [(r["tp"], r["objectives"]) for r in reports] == [(tp, 4)] * tp
