"""NeMo AutoModel's own LLM fine-tuning recipe (recipes/llm/train_ft.py), end to end on the CPU: a tiny
random-weight Llama written locally, AutoModel's column-mapped JSONL dataset, FSDP2 on one gloo rank,
AdamW, gradient clipping and two micro-batches per step. Only the CUDA-only calls listed in
support/cpu_redirects.py are redirected."""

from __future__ import annotations

import math

import pytest

from tests.automodel import tiny

MASKED_CE = {"_target_": "nemo_automodel.components.loss.masked_ce.MaskedCrossEntropy"}
OURS = "nemo_beyond_nll.automodel.AutoModelObjectiveLoss"
FUSED = "nemo_beyond_nll.automodel.AutoModelLinearObjectiveLoss"


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return tiny.write_backbone(root / "model"), tiny.write_data(root / "train.jsonl"), root


@pytest.fixture(scope="module")
def masked_ce_run(backbone):
    model, data, root = backbone
    return tiny.run_train_ft(tiny.recipe(model, data, root / "masked_ce", MASKED_CE), root / "masked_ce")


def assert_same_run(ours, reference):
    assert [r["step"] for r in ours] == [r["step"] for r in reference] and len(ours) == 4
    for a, b in zip(ours, reference):
        assert a["num_label_tokens"] == b["num_label_tokens"] > 0
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-6), (a, b)
        assert math.isclose(a["grad_norm"], b["grad_norm"], rel_tol=1e-5), (a, b)


def test_nll_trains_as_masked_cross_entropy(backbone, masked_ce_run):
    model, data, root = backbone
    runs = tiny.run_train_ft(tiny.recipe(model, data, root / "nll", {"_target_": OURS, "objective": "nll"}), root / "nll")
    assert_same_run(runs, masked_ce_run)
    assert {r["loss_fn_class"] for r in runs} == {"AutoModelObjectiveLoss"}
    assert masked_ce_run[-1]["loss"] < masked_ce_run[0]["loss"]
    assert all(r["loss_fn"]["kept_fraction"] == 1.0 for r in runs)


def test_fused_nll_trains_as_masked_cross_entropy(backbone, masked_ce_run):
    """The recipe routes hidden states and the LM head to the fused class (its LinearCrossEntropy route)."""
    model, data, root = backbone
    runs = tiny.run_train_ft(tiny.recipe(model, data, root / "fused", {"_target_": FUSED, "objective": "nll"}),
                             root / "fused")
    assert_same_run(runs, masked_ce_run)
    # not downgraded to MaskedCrossEntropy by the recipe: the fused class ran and counted the tokens
    assert {r["loss_fn_class"] for r in runs} == {"AutoModelLinearObjectiveLoss"}
    assert [r["loss_fn"]["label_tokens"] for r in runs] == [r["num_label_tokens"] // 2 for r in runs]


def test_threshold_objective_trains_and_reports_its_kept_fraction(backbone):
    """neg_p_threshold above p = 0.016 (about 1/64, the random model's p): the loss falls and the kept
    fraction, read from the loss after each step, rises from part of the tokens."""
    model, data, root = backbone
    loss_fn = {"_target_": OURS, "objective": "neg_p_threshold", "objective_args": {"threshold": 0.016}}
    runs = tiny.run_train_ft(tiny.recipe(model, data, root / "threshold", loss_fn, lr=1e-2), root / "threshold")
    losses = [r["loss"] for r in runs]
    kept = [r["loss_fn"]["kept_fraction"] for r in runs]
    assert losses[-1] < losses[0], losses
    assert 0.0 < kept[0] < 1.0 and kept[-1] > kept[0], kept
    assert all(0.0 < r["loss_fn"]["mean_prob"] < 1.0 for r in runs)
