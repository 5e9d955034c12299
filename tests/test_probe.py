import math

import pytest
import torch

from nemo_beyond_nll.probe import (
    STRONG_MEAN_P,
    WEAK_MEAN_P,
    format_report,
    plot_histogram,
    probability_stats,
    recommend,
)


def test_stats_by_hand():
    values = (0.07, 0.2, 0.6, 0.97)
    s = probability_stats(torch.tensor(values, dtype=torch.float64))
    assert s.num_tokens == 4
    assert s.mean_p == pytest.approx(0.46)
    assert s.mean_log_p == pytest.approx(sum(math.log(x) for x in values) / 4)
    assert s.fraction_above == {"p>0.1": 0.75, "p>0.5": 0.5, "p>0.9": 0.25}
    assert s.quantiles["q50"] == pytest.approx(0.4)  # linear interpolation between 0.2 and 0.6
    expected = [0] * 20
    for bin_index in (1, 4, 12, 19):
        expected[bin_index] = 1
    assert s.histogram == expected


def test_zero_probability_has_finite_log():
    assert math.isfinite(probability_stats(torch.tensor([0.0, 1.0])).mean_log_p)


def test_bad_inputs():
    with pytest.raises(ValueError, match="no completion tokens"):
        probability_stats(torch.tensor([]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        probability_stats(torch.tensor([1.5]))


def mixture(high_fraction, n=1000, high=0.98, low=0.001):
    k = int(high_fraction * n)
    return probability_stats(torch.tensor([high] * k + [low] * (n - k)))


def test_rule_on_synthetic_distributions():
    strong = recommend(mixture(0.8))
    assert strong.placement == "strong" and strong.loss == "neg_p"
    weak = recommend(mixture(0.1))
    assert weak.placement == "weak" and weak.loss == "nll"
    middle = recommend(mixture(0.35))
    assert middle.placement == "intermediate" and middle.loss == "nll" and "neg_p" in middle.reason
    # Every token at p = 0.55: mean and share above 0.5 both pass.
    assert recommend(probability_stats(torch.full((10,), 0.55))).placement == "strong"
    # Mean above the strong cut-off but most tokens below 0.5 is not the strong end.
    lopsided = probability_stats(torch.tensor([1.0] * 45 + [0.45] * 55))
    assert lopsided.mean_p >= STRONG_MEAN_P and recommend(lopsided).placement == "intermediate"
    at_cutoff = probability_stats(torch.full((10,), WEAK_MEAN_P, dtype=torch.float64))
    assert recommend(at_cutoff).placement == "weak"


def test_report_and_plot(tmp_path):
    s = mixture(0.8)
    text = format_report(s, recommend(s))
    assert "recommended: model.loss=neg_p" in text and "placement: strong" in text
    plot_histogram(s, tmp_path / "p.png", "test")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_one_histogram_for_probe_runs_and_tensorboard():
    import torch

    from nemo_beyond_nll.probe import HIST_BINS, histogram_edges, probability_histogram
    from nemo_beyond_nll.engines.cpu.metrics import probability_histogram as run_histogram

    prob = torch.tensor([[0.0, 0.04, 0.05, 0.5], [0.99, 1.0, 0.3, 0.72]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 1]])
    counts = probability_histogram(prob[mask.bool()])
    assert len(counts) == HIST_BINS and sum(counts) == 6
    assert counts[0] == 2 and counts[1] == 1 and counts[-1] == 2 and counts[14] == 1
    assert run_histogram(prob, mask) == counts
    assert torch.equal(histogram_edges(), torch.linspace(0, 1, HIST_BINS + 1))


def test_percentiles_match_a_sorted_count():
    # 1001 evenly spaced values: the q-th percentile (linear interpolation) is q/100 exactly.
    values = torch.linspace(0.0, 1.0, 1001, dtype=torch.float64)
    s = probability_stats(values[torch.randperm(1001)])
    assert list(s.percentiles) == ["5", "10", "20", "30", "40", "50", "60", "70", "80", "90"]
    for q, v in s.percentiles.items():
        assert v == pytest.approx(int(q) / 100, abs=1e-12)
        assert float((values <= v + 1e-12).double().mean()) >= int(q) / 100  # at least q% of tokens at or below


def test_report_prints_percentiles():
    s = probability_stats(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
    assert "percentiles of p: 5% 0.115" in format_report(s, recommend(s))
