"""ObjectiveForwardStep's loss with the real Megatron-Bridge loss function and Megatron-Core 0.19."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nemo_beyond_nll import get_objective
from nemo_beyond_nll.megatron import install, last_output
from nemo_beyond_nll.engines.cpu.runtime import causal_mask, init_megatron_cpu
from nemo_beyond_nll.engines.cpu.models import TinyGPTConfig, build_tiny_gpt
from nemo_beyond_nll.megatron.step import NO_ZERO_DIVISION, ObjectiveForwardStep

pytestmark = pytest.mark.bridge


class _Writer:
    def __init__(self):
        self.calls = []

    def add_histogram(self, tag, values, step, bins=None):
        self.calls.append((tag, values.clone(), step))


def _state(step, check_nan=True, check_spiky=False, per_token=True):
    checks = SimpleNamespace(check_for_nan_in_loss=check_nan, check_for_spiky_loss=check_spiky)
    return SimpleNamespace(train_state=SimpleNamespace(step=step), tensorboard_logger=_Writer(), wandb_logger=None,
                           cfg=SimpleNamespace(rerun_state_machine=checks,
                                               model=SimpleNamespace(calculate_per_token_loss=per_token)))


@pytest.fixture(scope="module")
def model():
    init_megatron_cpu(tensor_parallel=1)
    cfg = TinyGPTConfig(vocab_size=64, seq_length=8, hidden_size=32, num_attention_heads=4, ffn_hidden_size=64)
    return build_tiny_gpt(cfg)


def _batch():
    tokens = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    loss_mask = torch.ones(2, 8)
    loss_mask[0, :3] = 0
    return tokens, torch.arange(8)[None].expand(2, -1), loss_mask


def test_loss_logs_the_probability_histogram_at_intervals(model):
    install(model, "neg_p")
    step_fn = ObjectiveForwardStep(get_objective("neg_p"), hist_interval=5)
    tokens, position_ids, loss_mask = _batch()
    # Steps of successive micro-batches; the second micro-batch of step 5 is not logged again.
    for step, expect_log in ((4, False), (5, True), (5, False), (6, False), (10, True)):
        state = _state(step)
        output = model(tokens, position_ids, causal_mask(8), labels=tokens)
        _, num_kept, _ = step_fn.loss(state, model, loss_mask, output)
        assert num_kept.item() == 13
        logged = state.tensorboard_logger.calls
        assert bool(logged) == expect_log, step
        if logged:
            tag, values, at = logged[0]
            assert tag == "target prob" and at == step and values.numel() == 13
            assert torch.allclose(values, last_output(model).prob[loss_mask.bool()].float())


def test_loss_equals_bridges_masked_loss_for_nll_and_names_other_objectives(model):
    from megatron.bridge.training.losses import masked_next_token_loss

    tokens, position_ids, loss_mask = _batch()
    install(model, "nll")
    output = model(tokens, position_ids, causal_mask(8), labels=tokens)
    ours = ObjectiveForwardStep(get_objective("nll")).loss(_state(1), model, loss_mask, output)
    theirs = masked_next_token_loss(loss_mask, output)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert set(ours[2]) == {"lm loss", "target prob", "kept fraction"}
    torch.testing.assert_close(ours[2]["lm loss"], theirs[2]["lm loss"].float())

    install(model, "neg_p_power", alpha=4)
    output = model(tokens, position_ids, causal_mask(8), labels=tokens)
    _, _, metrics = ObjectiveForwardStep(get_objective("neg_p_power", alpha=4)).loss(_state(1), model, loss_mask, output)
    assert set(metrics) == {"neg_p_power loss", "target prob", "kept fraction"}


def test_validation_logs_the_loss_alone(model):
    install(model, "neg_p")
    tokens, position_ids, loss_mask = _batch()
    output = model(tokens, position_ids, causal_mask(8), labels=tokens)
    model.eval()
    try:
        _, _, metrics = ObjectiveForwardStep(get_objective("neg_p")).loss(_state(1), model, loss_mask, output)
    finally:
        model.train()
    assert list(metrics) == ["neg_p loss"]


def test_a_micro_batch_that_keeps_nothing_reports_zero_not_nan(model, capsys):
    install(model, "neg_p_threshold", threshold=0.99)
    tokens, position_ids, loss_mask = _batch()
    output = model(tokens, position_ids, causal_mask(8), labels=tokens)
    step_fn = ObjectiveForwardStep(get_objective("neg_p_threshold", threshold=0.99))
    loss, num_kept, metrics = step_fn.loss(_state(3), model, loss_mask, output)
    step_fn.loss(_state(3), model, loss_mask, output)  # warned once per step
    assert loss.item() == 0.0 and num_kept.item() == 0
    summed, count = metrics["neg_p_threshold loss"]
    assert summed / count == 0.0 and count == torch.tensor(NO_ZERO_DIVISION)
    kept_sum, tokens_count = metrics["kept fraction"]
    assert kept_sum == 0 and tokens_count == 13
    warnings = [line for line in capsys.readouterr().err.splitlines() if "keeps no token" in line]
    assert len(warnings) == 1 and "step 3" in warnings[0] and "threshold=0.99" in warnings[0]


@pytest.mark.parametrize("threshold", [0.0, 0.99])
def test_under_micro_batch_the_logged_pair_is_the_micro_batch_mean_counted_once(model, threshold):
    """calculate_per_token_loss off (model.loss_reduction micro_batch): [mean over kept, 1], so Bridge's
    pooling of the pairs averages micro-batch means; on: [sum, kept]. A micro-batch keeping nothing: 0."""
    install(model, "neg_p_threshold", threshold=threshold)
    tokens, position_ids, loss_mask = _batch()
    output = model(tokens, position_ids, causal_mask(8), labels=tokens)
    counted = loss_mask * last_output(model).kept.reshape(loss_mask.shape).float()
    step_fn = ObjectiveForwardStep(get_objective("neg_p_threshold", threshold=threshold))
    _, num_kept, pooled = step_fn.loss(_state(1), model, loss_mask, output)
    loss, _, metrics = step_fn.loss(_state(1, per_token=False), model, loss_mask, output)
    summed, kept = (output.detach() * counted).sum(), counted.sum()
    assert num_kept.item() == kept.item() == (13 if threshold == 0.0 else 0)
    torch.testing.assert_close(pooled["neg_p_threshold loss"], torch.stack([summed, kept + NO_ZERO_DIVISION]))
    torch.testing.assert_close(metrics["neg_p_threshold loss"], torch.stack([summed / max(kept, 1), torch.tensor(1.0)]))
    assert set(metrics) == {"neg_p_threshold loss", "target prob", "kept fraction"}


def test_nan_in_the_loss_goes_through_bridges_rerun_checks(model):
    install(model, "neg_p")
    tokens, position_ids, loss_mask = _batch()
    output = model(tokens, position_ids, causal_mask(8), labels=tokens).detach().clone()
    output[1, 4] = float("nan")
    step_fn = ObjectiveForwardStep(get_objective("neg_p"))
    with pytest.raises(Exception, match="NaN"):
        step_fn.loss(_state(1, check_nan=True), model, loss_mask, output)
    loss, _, _ = step_fn.loss(_state(1, check_nan=False), model, loss_mask, output)
    assert torch.isnan(loss)
