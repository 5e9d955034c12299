import math

import pytest
import torch

from nemo_beyond_nll.probe import (
    STRONG_FRACTION,
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
    assert s.fraction_above == {"p>0.1": 0.75, "p>0.5": 0.5, "p>0.55": 0.5, "p>0.9": 0.25}
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
    middle = recommend(mixture(0.5))
    assert middle.placement == "intermediate" and middle.loss == "nll"
    assert "small" in middle.reason and "neg_p" in middle.reason
    # A high mean with too few tokens above 0.55 (Assumption 6.1) is not the strong end.
    lopsided = probability_stats(torch.tensor([1.0] * 65 + [0.5] * 35, dtype=torch.float64))
    assert lopsided.mean_p >= STRONG_MEAN_P and lopsided.fraction_above["p>0.55"] < STRONG_FRACTION
    assert recommend(lopsided).placement == "intermediate"
    at_strong = probability_stats(torch.full((10,), STRONG_MEAN_P, dtype=torch.float64))
    assert recommend(at_strong).placement == "strong"  # every token above 0.55, mean at the cut-off
    at_weak = probability_stats(torch.full((10,), WEAK_MEAN_P, dtype=torch.float64))
    assert recommend(at_weak).placement == "intermediate"  # weak is strictly below


def _paper_like(mean_p, fraction_above, n=10000):
    """Token probabilities with the given mean and share above 0.55: that share at one level above
    0.55, the rest at one level at or below it (as low as the mean allows)."""
    k = round(fraction_above * n)
    low = max(0.0, (mean_p - fraction_above) / (1 - fraction_above)) if k < n else 0.0
    high = (mean_p - (1 - fraction_above) * low) / fraction_above if k else 0.0
    assert (k == 0 or 0.55 < high <= 1.0) and low <= 0.55
    return probability_stats(torch.tensor([high] * k + [low] * (n - k), dtype=torch.float64))


# The paper's Table 5 (mean p of the base model on its training set) and Table 6 (share of tokens
# above 0.55, printed for the strong end only), with the end the paper assigns each pair to.
PAPER_POINTS = [
    ("LLaMA-3.1-8B math", 0.80, 0.728, "strong"), ("DeepSeekMath-7B math", 0.76, 0.767, "strong"),
    ("Qwen2.5-Math-1.5B math", 0.80, 0.806, "strong"), ("Qwen2.5-Math-7B math", 0.81, 0.812, "strong"),
    ("LLaMA-3.2-3B medical", 0.50, None, "intermediate"), ("LLaMA-3.1-8B medical", 0.53, None, "intermediate"),
    ("Qwen2.5-1.5B medical", 0.56, None, "intermediate"), ("Qwen2.5-Math-7B medical", 0.59, None, "intermediate"),
    ("LLaMA-3.2-3B figfont", 0.01, None, "weak"), ("LLaMA-3.1-8B figfont", 0.01, None, "weak"),
    ("Qwen2.5-1.5B figfont", 0.01, None, "weak"), ("Qwen2.5-7B figfont", 0.07, None, "weak"),
]


@pytest.mark.parametrize("name, mean_p, fraction, end", PAPER_POINTS, ids=[p[0] for p in PAPER_POINTS])
def test_the_papers_twelve_points_are_placed_as_the_paper_places_them(name, mean_p, fraction, end):
    # Where the paper prints no share above 0.55: none, half the mean, and as many as the mean allows.
    shares = [fraction] if fraction is not None else [0.0, 0.5 * mean_p, mean_p]
    shares = [x for x in shares if x + (1 - x) * 0.55 >= mean_p]  # those the mean allows
    for share in shares:
        stats = _paper_like(mean_p, share)
        assert stats.mean_p == pytest.approx(mean_p, abs=1e-9)
        assert stats.fraction_above["p>0.55"] == pytest.approx(share, abs=1e-4)
        assert recommend(stats).placement == end, (name, share)
    # Every token at the mean (the share is then 0 or 1) is placed the same way.
    assert recommend(probability_stats(torch.full((100,), mean_p, dtype=torch.float64))).placement == end


def test_auto_choice_records_its_statistics(tmp_path):
    import json

    from nemo_beyond_nll.probe import auto_choice, read_auto_choice
    from nemo_beyond_nll.run_folder import AUTO as AUTO_FILE

    values = torch.tensor([0.9] * 80 + [0.2] * 20, dtype=torch.float64)
    choice = auto_choice(values, batches=3)
    assert (choice.loss, choice.placement, choice.batches, choice.num_tokens) == ("neg_p", "strong", 3, 100)
    assert choice.mean_p == pytest.approx(0.76) and choice.fraction_above_055 == pytest.approx(0.8)
    assert choice.objective.name == "neg_p"
    assert "strong end -> model.loss=neg_p" in choice.describe()
    (tmp_path / AUTO_FILE).write_text(json.dumps(choice.to_dict()))
    assert read_auto_choice(tmp_path) == choice
    with pytest.raises(FileNotFoundError, match="no auto.json in"):
        read_auto_choice(tmp_path / "elsewhere")


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


def test_decide_auto_measures_once_and_refuses_a_started_run_without_its_choice(tmp_path):
    from nemo_beyond_nll.probe import decide_auto
    from nemo_beyond_nll.run_folder import AUTO as AUTO_FILE

    calls = []

    def measure():
        calls.append(1)
        return torch.full((50,), 0.9, dtype=torch.float64)

    with pytest.raises(ValueError, match="choice of this run is lost"):
        decide_auto(tmp_path, 2, measure, started=True, writer=True)
    choice, new = decide_auto(tmp_path / "reader", 2, measure, started=False, writer=False)
    assert new and choice.loss == "neg_p" and not (tmp_path / "reader" / AUTO_FILE).exists()  # only the writer writes
    choice, new = decide_auto(tmp_path, 2, measure, started=False, writer=True)
    assert new and (tmp_path / AUTO_FILE).is_file()
    again, new = decide_auto(tmp_path, 2, measure, started=True, writer=True)
    assert not new and again == choice and len(calls) == 2  # read back, never measured again
