import math

import pytest
import torch

from nemo_beyond_nll import FAMILIES, get_objective
from nemo_beyond_nll.core.objectives import DEFAULT_ALPHA, DEFAULT_THRESHOLD

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
    ],
)
def test_bad_arguments_name_the_argument(name, args, named):
    with pytest.raises(ValueError, match=named):
        get_objective(name, **args)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_value_and_weight_match_closed_form(name):
    """value = f(p), and weight = -f'(p) * p (by autograd on the closed form)."""
    obj = get_objective(name)
    logprob = torch.linspace(-30, 0, 301, dtype=torch.float64).requires_grad_()
    prob = logprob.exp()
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
