import pytest
import torch
from omegaconf import OmegaConf

from nemo.core.classes import Loss

from nemo_beyond_nll import get_objective
from nemo_beyond_nll.nemo import NeMoObjectiveLoss

from .reference import reference_objective


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 10, 16, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, 16, (3, 10), generator=g)
    labels[0, :2] = -100
    mask = torch.rand(3, 10, generator=g) > 0.3
    return logits, labels, mask


def test_is_a_nemo_loss_with_neural_types():
    loss = NeMoObjectiveLoss("neg_p")
    assert isinstance(loss, Loss)
    assert set(loss.input_types) == {"logits", "labels", "loss_mask"}
    assert loss.input_types["loss_mask"].optional
    assert set(loss.output_types) == {"loss"}


@pytest.mark.parametrize("name", ["nll", "OnlyTopP-0.1", "OnlyBottomLogP-0.1", "neg_p_power", "log_one_minus_p",
                                  "adaptive_power"])
def test_reduces_over_kept_and_masked_tokens(name):
    logits, labels, mask = batch()
    loss_fn = NeMoObjectiveLoss(name)
    x = logits.clone().requires_grad_()
    value = loss_fn(logits=x, labels=labels, loss_mask=mask)
    assert value.dim() == 0

    ref_x = logits.clone().requires_grad_()
    ref_loss, _, ref_kept = reference_objective(ref_x, labels, get_objective(name))
    kept = ref_kept & mask
    expected = (ref_loss * kept).sum() / kept.sum()
    torch.testing.assert_close(value, expected)
    assert torch.equal(loss_fn.last_output.kept, kept)
    value.backward()
    expected.backward()
    torch.testing.assert_close(x.grad, ref_x.grad)


def test_without_mask_and_all_ignored():
    logits, labels, _ = batch()
    loss_fn = NeMoObjectiveLoss("neg_p")
    ref_loss, _, ref_kept = reference_objective(logits, labels, get_objective("neg_p"))
    torch.testing.assert_close(loss_fn(logits=logits, labels=labels), ref_loss.sum() / ref_kept.sum())
    assert loss_fn(logits=logits, labels=torch.full_like(labels, -100)).item() == 0.0


def test_typecheck_rejects_wrong_rank():
    loss_fn = NeMoObjectiveLoss("nll")
    with pytest.raises(TypeError):
        loss_fn(logits=torch.randn(4, 16), labels=torch.zeros(4, dtype=torch.long))


def test_builds_from_yaml_and_loss_nodes(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("model:\n  loss: neg_p_threshold\n  loss_args:\n    threshold: 0.2\n    keep: below\n")
    loss_fn = NeMoObjectiveLoss.from_config_dict(OmegaConf.load(path))
    assert loss_fn.objective == get_objective("OnlyBottomP-0.2")
    node = NeMoObjectiveLoss.from_config_dict({"objective": "GeneralFamily-3", "ignore_index": 0})
    assert node.objective == get_objective("neg_p_power", alpha=3) and node.ignore_index == 0
    assert set(node.to_config_dict()) == {"objective", "objective_args", "ignore_index"}
    again = NeMoObjectiveLoss.from_config_dict(node.to_config_dict())
    assert again.objective == node.objective and again.ignore_index == 0


def test_bad_config_is_a_value_error():
    with pytest.raises(ValueError, match="unknown objective"):
        NeMoObjectiveLoss.from_config_dict({"model": {"loss": "focal"}})
    with pytest.raises(ValueError, match="threshold"):
        NeMoObjectiveLoss("neg_p_threshold", {"threshold": 3})
    # a node key the constructor does not take would otherwise silently mean nll
    with pytest.raises(ValueError, match=r"loss node keys \['loss'\] are not among"):
        NeMoObjectiveLoss.from_config_dict({"loss": "neg_p"})
