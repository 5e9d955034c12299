"""The objectives in transformers.Trainer: `nll` is the Trainer's own loss, values and gradients, with
gradient accumulation 1 and 4; a threshold objective trains, reduces over kept tokens and logs its
kept fraction and mean p; the fused output layer equals the unfused one."""

import pytest

from .tier import WHY

pytest.importorskip("trl", reason=WHY)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nemo_beyond_nll.hf import HFObjectiveLoss, ObjectiveTrainer  # noqa: E402

from .tiny import assert_same_gradients, load_model, train, training_args  # noqa: E402


@pytest.mark.parametrize("accumulation", [1, 4])
def test_nll_is_the_trainers_default_loss_and_gradients(model_dir, data, tmp_path, accumulation):
    args = training_args(tmp_path, accumulation=accumulation)
    _, default_grads, default_losses = train(model=load_model(model_dir), args=args, data=data)
    loss = HFObjectiveLoss("nll")
    _, our_grads, our_losses = train(model=load_model(model_dir), args=args, data=data, compute_loss_func=loss)
    assert_same_gradients(our_grads, default_grads)
    assert our_losses == pytest.approx(default_losses, rel=1e-5)
    assert len(our_losses) == 3


def test_accumulation_changes_the_micro_batches_not_the_step(model_dir, data, tmp_path):
    """4 micro-batches of 2 rows accumulate to one batch of 8 rows: num_items_in_batch normalises both alike."""
    loss = HFObjectiveLoss("neg_p")
    _, accumulated, _ = train(model=load_model(model_dir), args=training_args(tmp_path, accumulation=4, batch=2),
                              data=data, compute_loss_func=loss)
    _, whole, _ = train(model=load_model(model_dir), args=training_args(tmp_path, accumulation=1, batch=8),
                        data=data, compute_loss_func=loss)
    assert_same_gradients(accumulated, whole)


def kept_mean_by_hand(model, data, threshold):
    """(mean of 1 - p over tokens with p >= threshold, kept fraction, mean p) of the whole data set, in plain torch."""
    batch = {k: torch.tensor(data[k]) for k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    target = batch["labels"][:, 1:]
    logp = F.log_softmax(logits[:, :-1].double(), -1)
    valid = target != -100
    p = logp.gather(-1, target.clamp(min=0)[..., None])[..., 0].exp()[valid]
    kept = p >= threshold
    return (1 - p[kept]).sum().item() / kept.sum().item(), kept.double().mean().item(), p.mean().item()


def test_neg_p_threshold_trains_over_kept_tokens_and_logs_kept_fraction(model_dir, data, tmp_path):
    threshold = 0.03  # the random model's p sits around 1/36: this keeps some tokens and drops others
    expected_loss, expected_kept, expected_p = kept_mean_by_hand(load_model(model_dir), data, threshold)
    assert 0.1 < expected_kept < 0.9
    model = load_model(model_dir)
    before = [p.detach().clone() for p in model.parameters()]
    loss = HFObjectiveLoss("neg_p_threshold", {"threshold": threshold})
    # One step over all 16 rows: the logged loss is the mean over the step's kept tokens.
    trainer, grads, losses = train(model=model, args=training_args(tmp_path, batch=16, steps=1), data=data,
                                   compute_loss_func=loss, callbacks=[loss.callback()])
    assert losses[0] == pytest.approx(expected_loss, rel=1e-5)
    first = next(e for e in trainer.state.log_history if "loss" in e)
    assert first["kept_fraction"] == pytest.approx(expected_kept, rel=1e-6)
    assert first["mean_prob"] == pytest.approx(expected_p, rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

    # Several steps with accumulation: every step logs its kept fraction and mean p, and p rises as it learns.
    trainer, _, losses = train(model=load_model(model_dir), args=training_args(tmp_path, accumulation=2, steps=4),
                               data=data, compute_loss_func=loss, callbacks=[loss.callback()])
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert len(logged) == 4 and all(0 < e["kept_fraction"] <= 1 and 0 < e["mean_prob"] < 1 for e in logged)
    assert logged[0]["kept_fraction"] < 1 and logged[-1]["mean_prob"] > logged[0]["mean_prob"]
    assert all(torch.isfinite(torch.tensor(losses)))


def test_reference_names_and_arguments_reach_the_objective():
    assert HFObjectiveLoss("OnlyTopP-0.1").objective == HFObjectiveLoss("neg_p_threshold", {"threshold": 0.1}).objective
    with pytest.raises(ValueError, match="does not take argument"):
        HFObjectiveLoss("neg_p", {"threshold": 0.1})


@pytest.mark.parametrize("objective", [{"objective": "nll"}, {"objective": "neg_p_threshold", "objective_args": {"threshold": 0.03}}])
def test_fused_output_layer_equals_the_unfused_path(model_dir, data, tmp_path, objective):
    runs = {}
    for fused in (True, False):
        model = load_model(model_dir)
        head_calls = []
        model.lm_head.register_forward_hook(lambda *_: head_calls.append(1))
        loss = HFObjectiveLoss(chunk_vocab=8, **objective)  # several vocabulary blocks
        trainer, grads, losses = train(ObjectiveTrainer, model=model, args=training_args(tmp_path, accumulation=2),
                                       data=data, objective_loss=loss, fused_linear=fused)
        runs[fused] = grads, losses, trainer.state.log_history, len(head_calls)
    assert_same_gradients(runs[True][0], runs[False][0])
    assert runs[True][1] == pytest.approx(runs[False][1], rel=1e-5)
    assert runs[True][3] == 0 and runs[False][3] > 0  # the fused run never made logits
    for history in (runs[True][2], runs[False][2]):  # the mixin logs the metrics inside Trainer.log
        assert all("kept_fraction" in e and "mean_prob" in e for e in history if "loss" in e)


def test_objective_trainer_nll_is_the_trainers_default(model_dir, data, tmp_path):
    args = training_args(tmp_path, accumulation=4)
    _, default_grads, _ = train(model=load_model(model_dir), args=args, data=data)
    _, our_grads, _ = train(ObjectiveTrainer, model=load_model(model_dir), args=args, data=data)
    assert_same_gradients(our_grads, default_grads)


@pytest.mark.parametrize("num_items", [None, 11])
def test_nll_equals_transformers_causal_lm_loss_with_and_without_num_items(num_items):
    from transformers.loss.loss_utils import ForCausalLMLoss

    torch.manual_seed(0)
    logits = torch.randn(3, 7, 20, requires_grad=True)
    labels = torch.randint(0, 20, (3, 7))
    labels[0, :3] = -100
    labels[2, 5:] = -100
    theirs = ForCausalLMLoss(logits, labels, vocab_size=20, num_items_in_batch=num_items)
    ours = HFObjectiveLoss("nll")({"logits": logits}, labels, num_items_in_batch=num_items)
    torch.testing.assert_close(ours, theirs)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    (grad_theirs,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(grad_ours, grad_theirs)
    # Labels already shifted (a context-parallel collator's shift_labels) are scored as given.
    shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]
    again = HFObjectiveLoss("nll")({"logits": logits}, None, num_items_in_batch=num_items, shifted=shifted)
    torch.testing.assert_close(again, theirs)


@pytest.mark.parametrize("name", ["nll", "neg_p", "neg_p_power", "neg_p_threshold", "nll_threshold", "dft",
                                  "log_one_minus_p", "log_one_minus_p_threshold", "adaptive_power",
                                  "GeneralFamily-10", "OnlyBottomP-0.5", "UnlikehoodTop-0.01"])
def test_every_objective_is_the_core_loss_on_shifted_labels(name):
    from nemo_beyond_nll.core.functional import objective_loss
    from nemo_beyond_nll.core.objectives import FAMILIES

    torch.manual_seed(1)
    logits = torch.randn(2, 9, 16) * 3
    labels = torch.randint(0, 16, (2, 9))
    labels[:, :2] = -100
    loss = HFObjectiveLoss(name)
    ours = loss({"logits": logits}, labels)  # no num_items_in_batch: the mean over kept tokens
    expected, _ = objective_loss(logits[:, :-1], labels[:, 1:], loss.objective)
    torch.testing.assert_close(ours, expected)
    assert loss.objective.name in FAMILIES
