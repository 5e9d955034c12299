import math

import pytest
import torch

from nemo_beyond_nll import FAMILIES, get_objective
from nemo_beyond_nll.core.objectives import DEFAULT_ALPHA, DEFAULT_MIN_POWER, DEFAULT_THRESHOLD

from ..reference import CLOSED_FORM


@pytest.mark.parametrize(
    "reference, canonical, args",
    [
        ("original", "nll", {}),
        ("logp", "nll", {}),
        ("p", "neg_p", {}),
        ("GeneralFamily-10", "neg_p_power", {"alpha": 10.0}),
        ("GeneralFamily-0.5", "neg_p_power", {"alpha": 0.5}),
        ("OnlyTopP-0.1", "neg_p_threshold", {"threshold": 0.1}),
        ("OnlyBottomP-0.9", "neg_p_threshold", {"threshold": 0.9, "keep": "below"}),
        ("OnlyTopLogP-0.25", "nll_threshold", {"threshold": 0.25, "keep": "above"}),
        ("OnlyBottomLogP-0.5", "nll_threshold", {"threshold": 0.5, "keep": "below"}),
        ("UnlikehoodTop-0.17", "log_one_minus_p_threshold", {"threshold": 0.17, "offset": 1e-3}),
        ("UnlikehoodBottom-0.8", "log_one_minus_p_threshold", {"threshold": 0.8, "keep": "below", "offset": 1e-3}),
    ],
)
def test_reference_names_equal_canonical(reference, canonical, args):
    assert get_objective(reference) == get_objective(canonical, **args)


def test_defaults_and_args():
    assert get_objective("neg_p_power").alpha == DEFAULT_ALPHA
    obj = get_objective("neg_p_threshold")
    assert (obj.threshold, obj.keep) == (DEFAULT_THRESHOLD, "above")
    assert get_objective("nll_threshold", threshold=1, keep="below").args == {"threshold": 1.0, "keep": "below"}
    assert get_objective("nll").args == {}
    assert str(get_objective("GeneralFamily-3")) == "neg_p_power(alpha=3.0)"
    assert get_objective("log_one_minus_p").args == {"offset": 0.0}
    assert get_objective("log_one_minus_p_threshold").args == {"offset": 0.0, "threshold": DEFAULT_THRESHOLD,
                                                               "keep": "above"}
    assert get_objective("adaptive_power").args == {"min_power": DEFAULT_MIN_POWER}
    assert str(get_objective("adaptive_power", min_power=0.5)) == "adaptive_power(min_power=0.5)"


def test_consistent_args_with_reference_name_are_accepted():
    assert get_objective("OnlyTopP-0.1", threshold=0.1) == get_objective("neg_p_threshold", threshold=0.1)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_objective("focal")
    message = str(err.value)
    assert "'focal'" in message
    for name in list(FAMILIES) + ["OnlyTopP-<q>", "GeneralFamily-<alpha>", "original"]:
        assert name in message


@pytest.mark.parametrize(
    "name, args, named",
    [
        ("neg_p_threshold", {"threshold": 1.5}, "threshold"),
        ("neg_p_threshold", {"threshold": -0.1}, "threshold"),
        ("nll_threshold", {"threshold": float("nan")}, "threshold"),
        ("neg_p_threshold", {"threshold": "0.1"}, "threshold"),
        ("neg_p_threshold", {"keep": "top"}, "keep"),
        ("neg_p_power", {"alpha": 0}, "alpha"),
        ("neg_p_power", {"alpha": -2}, "alpha"),
        ("neg_p_power", {"alpha": float("inf")}, "alpha"),
        ("neg_p_power", {"alpha": True}, "alpha"),
        ("nll", {"alpha": 2}, "alpha"),
        ("neg_p", {"threshold": 0.1}, "threshold"),
        ("neg_p_power", {"beta": 1}, "beta"),
        ("OnlyTopP-2", {}, "threshold"),
        ("GeneralFamily--1", {}, "alpha"),
        ("OnlyTopP-0.1", {"threshold": 0.2}, "threshold"),
        ("OnlyTopP-0.1", {"keep": "below"}, "keep"),
        ("OnlyTopP-abc", {}, "abc"),
        ("log_one_minus_p", {"offset": -1e-3}, "offset"),
        ("log_one_minus_p", {"offset": float("nan")}, "offset"),
        ("log_one_minus_p", {"threshold": 0.1}, "threshold"),
        ("UnlikehoodTop-0.1", {"offset": 0.0}, "offset"),
        ("UnlikehoodBottom-x", {}, "'x'"),
        ("adaptive_power", {"min_power": 0}, "min_power"),
        ("adaptive_power", {"min_power": -1e-3}, "min_power"),
        ("adaptive_power", {"min_power": 1.5}, "min_power"),
        ("adaptive_power", {"min_power": float("nan")}, "min_power"),
        ("adaptive_power", {"alpha": 2}, "alpha"),
        ("neg_p_power", {"min_power": 0.1}, "min_power"),
    ],
)
def test_bad_arguments_name_the_argument(name, args, named):
    with pytest.raises(ValueError, match=named):
        get_objective(name, **args)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_value_and_weight_match_closed_form(name):
    """value = f(p), and weight = -f'(p) * p (by autograd on the closed form, adaptive_power's m held constant)."""
    logprob = torch.linspace(-30, 0, 301, dtype=torch.float64).requires_grad_()
    prob = logprob.exp()
    obj = get_objective(name).for_batch(prob.detach(), torch.ones_like(prob, dtype=torch.bool))
    closed = CLOSED_FORM[name](prob, logprob, obj)
    value, weight = obj.value(logprob.detach()), obj.weight(logprob.detach())
    assert torch.isfinite(value).all() and torch.isfinite(weight).all()
    # d f / d log p = f'(p) * p = -w(p); dft's stop-gradient makes it -1 * p, as intended.
    (dlogp,) = torch.autograd.grad(closed.sum(), logprob)
    # log(1 - p) is infinite at p = 1, the grid's last point; that point is the floor's (tested below).
    finite = torch.isfinite(closed.detach()) & torch.isfinite(dlogp)
    assert finite[:-1].all()
    torch.testing.assert_close(value[finite], closed.detach()[finite], rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(weight[finite], -dlogp[finite], rtol=1e-12, atol=1e-300)


def test_one_minus_p_keeps_precision_near_one():
    logprob = torch.tensor([-1e-9], dtype=torch.float32)
    assert math.isclose(get_objective("neg_p").value(logprob).item(), 1e-9, rel_tol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_one_minus_p_is_floored_at_eps_as_p_reaches_one(dtype):
    """Below 1 - p = eps the argument is held at eps: finite value log(eps), weight p / eps."""
    eps = torch.finfo(dtype).eps
    obj = get_objective("log_one_minus_p")
    logprob = torch.tensor([0.0, -eps / 4, -2 * eps, -1e-3], dtype=dtype)
    one_minus_p = torch.tensor([eps, eps, 2 * eps, -math.expm1(-1e-3)], dtype=torch.float64)
    torch.testing.assert_close(obj.value(logprob).double(), one_minus_p.log(), rtol=1e-6, atol=0)
    torch.testing.assert_close(obj.weight(logprob).double(), logprob.double().exp() / one_minus_p, rtol=1e-6, atol=0)


def test_paper_offset_never_reaches_the_floor():
    obj = get_objective("UnlikehoodTop-0")
    logprob = torch.tensor([0.0, -1e-9], dtype=torch.float32)
    torch.testing.assert_close(obj.value(logprob), torch.full((2,), math.log(1e-3)), rtol=1e-5, atol=0)
    torch.testing.assert_close(obj.weight(logprob), torch.full((2,), 1e3), rtol=1e-5, atol=0)


def test_keep_mask_uses_inclusive_comparisons():
    prob = torch.tensor([0.05, 0.1, 0.2])
    assert get_objective("OnlyTopP-0.1").keep_mask(prob).tolist() == [False, True, True]
    assert get_objective("OnlyBottomP-0.1").keep_mask(prob).tolist() == [True, True, False]
    assert get_objective("neg_p").keep_mask(prob) is None


def test_batch_free_objectives_are_their_own_batch_objective():
    prob, valid = torch.tensor([0.2, 0.6]), torch.tensor([True, True])
    for name in FAMILIES:
        obj = get_objective(name)
        assert (obj.for_batch(prob, valid) is obj) == (name != "adaptive_power")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adaptive_power_is_the_mean_p_of_the_valid_rows_floored_and_detached(dtype):
    obj = get_objective("adaptive_power", min_power=0.01)
    prob = torch.tensor([0.2, 0.9, 0.4, 0.0], dtype=dtype, requires_grad=True)
    valid = torch.tensor([True, False, True, False])
    power = obj.for_batch(prob, valid).power
    assert power.dim() == 0 and power.dtype == dtype and not power.requires_grad
    assert math.isclose(power.item(), 0.3, rel_tol=1e-6)
    assert obj.for_batch(prob * 0.01, valid).power.item() == pytest.approx(0.01)  # 0.003 floored
    assert obj.for_batch(prob, torch.zeros(4, dtype=torch.bool)).power.item() == pytest.approx(0.01)  # none valid
    assert obj.for_batch(torch.ones(4, dtype=dtype), valid).power.item() == 1.0
    # m is not an argument: equality and the printed form are those of the batch-free objective
    assert obj.for_batch(prob, valid) == obj and str(obj.for_batch(prob, valid)) == str(obj)


def test_adaptive_power_needs_its_batch():
    with pytest.raises(ValueError, match="for_batch"):
        get_objective("adaptive_power").value(torch.zeros(3))


def test_adaptive_power_is_neg_p_power_with_alpha_m():
    logprob = torch.linspace(-20, 0, 41, dtype=torch.float64)
    obj = get_objective("adaptive_power").for_batch(torch.tensor([0.25, 0.5]), torch.tensor([True, True]))
    same = get_objective("neg_p_power", alpha=0.375)
    torch.testing.assert_close(obj.value(logprob), same.value(logprob), rtol=1e-15, atol=0)
    torch.testing.assert_close(obj.weight(logprob), same.weight(logprob), rtol=1e-15, atol=0)
