import torch

from nemo_beyond_nll import get_objective
from nemo_beyond_nll.megatron import install
from nemo_beyond_nll.engines.cpu.runtime import causal_mask, init_megatron_cpu
from nemo_beyond_nll.engines.cpu.models import TinyGPTConfig, build_tiny_gpt
from nemo_beyond_nll.megatron.step import installed_output, objective_loss_terms

from ..reference import reference_objective


def loss_terms(model, loss_mask, output):
    """The loss terms of the per-token loss `output` an installed model returned."""
    out = installed_output(model)
    return objective_loss_terms(output, out.prob, out.kept, loss_mask, out.power)


def test_loss_terms_by_hand():
    loss = torch.tensor([[0.5, 1.0, 2.0, 4.0]])
    prob = torch.tensor([[0.9, 0.5, 0.2, 0.05]])
    kept = torch.tensor([[True, True, False, True]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss_sum, num_kept, metrics = objective_loss_terms(loss, prob, kept, mask)
    assert loss_sum.item() == 1.5 and num_kept.item() == 2 and num_kept.dtype == torch.int
    assert metrics["lm loss"].tolist() == [1.5, 2.0]
    assert torch.allclose(metrics["target prob"], torch.tensor([1.6, 3.0]))
    assert metrics["kept fraction"].tolist() == [2.0, 3.0]


def test_loss_function_on_a_real_gpt_model():
    """Kept-token reduction of an installed GPTModel equals the closed form on its logits."""
    init_megatron_cpu(tensor_parallel=1)
    cfg = TinyGPTConfig(vocab_size=64, seq_length=8, hidden_size=32, num_attention_heads=4, ffn_hidden_size=64)
    model = build_tiny_gpt(cfg)
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 64, (2, 8), generator=g)
    labels = torch.randint(0, 64, (2, 8), generator=g)
    loss_mask = (torch.rand(2, 8, generator=g) > 0.25).float()
    position_ids = torch.arange(8)[None].expand(2, -1)
    objective = get_objective("OnlyTopP-0.015")

    logits = model(tokens, position_ids, causal_mask(8)).detach()  # [b, s, V] without labels
    ref_loss, ref_prob, ref_kept = reference_objective(logits, labels, objective)
    counted = ref_kept & loss_mask.bool()
    assert 0 < counted.sum() < loss_mask.sum(), "the threshold should drop some masked-in tokens"

    install(model, objective)
    output = model(tokens, position_ids, causal_mask(8), labels=labels)
    loss_sum, num_kept, metrics = loss_terms(model, loss_mask, output)
    torch.testing.assert_close(loss_sum.double(), ref_loss[counted].sum(), rtol=1e-5, atol=1e-6)
    assert num_kept.item() == counted.sum().item()
    torch.testing.assert_close(metrics["target prob"][0].double(), (ref_prob * loss_mask).sum(), rtol=1e-5, atol=1e-6)
    assert metrics["kept fraction"].tolist() == [counted.sum().item(), loss_mask.sum().item()]
    loss_sum.backward()
    assert model.output_layer.weight.grad.abs().sum() > 0


def test_adaptive_power_logs_its_m_as_a_mean_pair():
    """`power` is [m, 1], so Bridge's sum-then-divide logs the mean m of the micro-batches; the loss terms
    are those of the per-token loss, as for any objective."""
    init_megatron_cpu(tensor_parallel=1)
    cfg = TinyGPTConfig(vocab_size=64, seq_length=8, hidden_size=32, num_attention_heads=4, ffn_hidden_size=64)
    model = build_tiny_gpt(cfg)
    g = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 64, (2, 8), generator=g)
    labels = torch.randint(0, 64, (2, 8), generator=g)
    loss_mask = torch.ones(2, 8)
    position_ids = torch.arange(8)[None].expand(2, -1)
    install(model, "adaptive_power")
    output = model(tokens, position_ids, causal_mask(8), labels=labels)
    loss_sum, num_kept, metrics = loss_terms(model, loss_mask, output)
    prob = metrics["target prob"][0] / metrics["target prob"][1]
    torch.testing.assert_close(metrics["power"], torch.stack([prob, torch.tensor(1.0)]), rtol=1e-6, atol=0)
    torch.testing.assert_close(loss_sum, output.sum(), rtol=1e-6, atol=0)
    assert num_kept.item() == 16
    install(model, "neg_p")
    output = model(tokens, position_ids, causal_mask(8), labels=labels)
    assert "power" not in loss_terms(model, loss_mask, output)[2]


def test_supervised_labels_keep_prompt_tokens_out_of_adaptive_power():
    """With the loss_mask's positions ignored, adaptive_power's m is the mean p of the supervised
    tokens only (the CPU engine's training step feeds the model such labels)."""
    from nemo_beyond_nll.megatron import last_output
    from nemo_beyond_nll.megatron.step import IGNORE_INDEX, supervised_labels

    labels = torch.tensor([[5, 6, 7, 8]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    assert supervised_labels(labels, mask).tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX]]
    init_megatron_cpu(tensor_parallel=1)
    cfg = TinyGPTConfig(vocab_size=64, seq_length=8, hidden_size=32, num_attention_heads=4, ffn_hidden_size=64)
    model = build_tiny_gpt(cfg)
    install(model, "adaptive_power", min_power=1e-6)
    g = torch.Generator().manual_seed(5)
    tokens, labels = torch.randint(0, 64, (2, 8), generator=g), torch.randint(0, 64, (2, 8), generator=g)
    loss_mask = torch.zeros(2, 8)
    loss_mask[:, 5:] = 1.0  # the completion: the last three positions
    position_ids = torch.arange(8)[None].expand(2, -1)
    model(tokens, position_ids, causal_mask(8), labels=labels)
    everything = last_output(model)
    model(tokens, position_ids, causal_mask(8), labels=supervised_labels(labels, loss_mask))
    supervised = last_output(model)
    # p of a supervised token is the same either way; m is the mean over the supervised ones alone
    assert torch.equal(supervised.prob[loss_mask.bool()], everything.prob[loss_mask.bool()])
    assert torch.isclose(supervised.power, supervised.prob[loss_mask.bool()].mean())
    assert torch.isclose(everything.power, everything.prob.mean())
    assert not torch.isclose(supervised.power, everything.power)


def test_zero_kept_warning_of_a_micro_batch():
    """The Bridge step's wording of the warning the CPU engine gives per run of steps."""
    from nemo_beyond_nll.megatron.step import zero_kept_warning

    text = zero_kept_warning(get_objective("neg_p_threshold", threshold=0.9), "of a micro-batch at step 7", 0.25,
                             detail=" of 512 tokens")
    assert text == ("WARNING: neg_p_threshold(threshold=0.9, keep=above) keeps no token of a micro-batch at step 7 "
                    "(kept fraction 0 of 512 tokens, mean p 0.25): it trains nothing there; "
                    "lower model.loss_args.threshold if this persists")
