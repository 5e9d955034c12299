"""model.loss_reduction: the global kept-token mean against the paper's mean of micro-batch means."""

import pytest
import torch

from nemo_beyond_nll.config import ConfigError
from nemo_beyond_nll.engines.cpu.trainer import micro_batch_loss
from nemo_beyond_nll.megatron.step import objective_loss_terms

# Two micro-batches of one row each: the first keeps one token, the second three.
LOSS = [torch.tensor([[2.0, 9.0, 9.0, 9.0]]), torch.tensor([[1.0, 2.0, 3.0, 9.0]])]
MASK = [torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]])]


def terms():
    return [objective_loss_terms(loss, torch.full_like(loss, 0.5), torch.ones_like(loss, dtype=torch.bool), mask)
            for loss, mask in zip(LOSS, MASK)]


def test_the_two_reductions_by_hand():
    parts = terms()
    global_loss = sum(s for s, _, _ in parts) / sum(k for _, k, _ in parts)
    micro = sum(micro_batch_loss(s, k, len(parts)) for s, k, _ in parts)
    assert global_loss.item() == pytest.approx((2 + 1 + 2 + 3) / 4)  # 2.0
    assert micro.item() == pytest.approx((2 / 1 + 6 / 3) / 2)  # also 2.0 here ...
    LOSS_B = torch.tensor([[4.0, 9.0, 9.0, 9.0]])  # ... but not once the micro-batch means differ
    s0, k0, _ = objective_loss_terms(LOSS_B, LOSS_B, torch.ones_like(LOSS_B, dtype=torch.bool), MASK[0])
    s1, k1, _ = parts[1]
    assert ((s0 + s1) / (k0 + k1)).item() == pytest.approx(10 / 4)
    assert (micro_batch_loss(s0, k0, 2) + micro_batch_loss(s1, k1, 2)).item() == pytest.approx((4 + 2) / 2)


def test_a_micro_batch_keeping_no_token_adds_zero():
    s, k, _ = objective_loss_terms(LOSS[0], LOSS[0], torch.zeros_like(LOSS[0], dtype=torch.bool), MASK[0])
    assert k.item() == 0 and micro_batch_loss(s, k, 2).item() == 0.0


def test_megatron_schedule_division_matches():
    """Megatron's forward_step with calculate_per_token_loss off divides the loss function's sum by
    clamp(num_tokens, 1) and by the number of micro-batches: micro_batch_loss is that division."""
    import inspect

    from megatron.core.pipeline_parallel import schedules

    step = getattr(schedules, "forward_step_calc_loss", schedules.forward_step)  # split out in later releases
    source = inspect.getsource(step)
    assert "output_tensor /= torch.clamp(num_tokens, min=1)" in source
    assert "output_tensor /= num_microbatches" in source


def test_gradients_differ_between_reductions():
    """Same parameters, same data: the gradient of the two reductions is not the same."""
    w = torch.nn.Parameter(torch.tensor(1.0))
    grads = {}
    for reduction in ("global", "micro_batch"):
        w.grad = None
        parts = [objective_loss_terms(w * torch.tensor([[3.0, 1.0, 1.0, 1.0]]) * (i + 1), torch.ones(1, 4),
                                      torch.ones(1, 4, dtype=torch.bool), MASK[i]) for i in range(2)]
        if reduction == "global":
            (sum(s for s, _, _ in parts) / sum(k for _, k, _ in parts)).backward()
        else:
            sum(micro_batch_loss(s, k, 2) for s, k, _ in parts).backward()
        grads[reduction] = w.grad.item()
    assert grads["global"] == pytest.approx((3 + 10) / 4)
    assert grads["micro_batch"] == pytest.approx((3 / 1 + 10 / 3) / 2)


def test_recipe_keys(tmp_path):
    from nemo_beyond_nll.recipe import load_recipe

    tiny = "recipes/tiny_cpu.yaml"
    cfg = load_recipe(tiny)
    assert cfg.model.loss_reduction == "global" and cfg.data.drop_last is False and cfg.data.truncate is None
    cfg = load_recipe(tiny, ["model.loss_reduction=micro_batch", "data.drop_last=true", "data.truncate=right"])
    assert cfg.model.loss_reduction == "micro_batch"
    with pytest.raises(ConfigError, match="loss_reduction"):
        load_recipe(tiny, ["model.loss_reduction=sum"])
    with pytest.raises(ConfigError, match="truncate"):
        load_recipe(tiny, ["data.truncate=left"])


def test_bridge_overrides_follow_the_reduction():
    from nemo_beyond_nll.engines.bridge.finetune import bridge_overrides
    from nemo_beyond_nll.recipe import load_recipe

    recipe = "recipes/qwen2.5-7b_figfont.yaml"
    assert "model.calculate_per_token_loss=true" in bridge_overrides(load_recipe(recipe), iters=10)
    micro = bridge_overrides(load_recipe(recipe, ["model.loss_reduction=micro_batch"]), iters=10)
    assert "model.calculate_per_token_loss=false" in micro and "ddp.average_in_collective=false" in micro
