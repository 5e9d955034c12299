"""eval/published.py: our figures beside the paper's, in its columns, with the difference."""

import csv

import pytest

from nemo_beyond_nll.eval.published import (
    Row,
    our_cells,
    paper_comparison_markdown,
    read_value,
    unplain_averages,
    write_paper_comparison,
)

SPEC = {
    "metric": "accuracy",
    "columns": [{"name": "A", "read": ["accuracy", "a"]}, {"name": "B", "read": ["by_source", "m", "b", "accuracy"]},
                {"name": "Avg"}, {"name": "X", "read": ["accuracy", "x"], "paper": False}],
    "published": {"r1": {"nll": {"A": 10.0, "B": 20.0, "Avg": 16.0}, "neg_p": {"A": 30.0, "B": 40.0, "Avg": 35.0}}},
}
ROWS = [Row("r1", "nll", "Model-1B", "-log p"), Row("r1", "neg_p", "Model-1B", "-p"),
        Row("r1", "neg_p_power10", "Model-1B", "(1-p^10)/10", in_paper=False)]


def test_read_value_in_percent_or_none():
    summary = {"accuracy": {"a": 0.25}, "by_source": {"m": {"b": {"accuracy": 0.5}}}}
    assert read_value(summary, ["accuracy", "a"]) == 25.0
    assert read_value(summary, ["by_source", "m", "b", "accuracy"]) == 50.0
    assert read_value(summary, ["accuracy", "missing"]) is None
    assert read_value({"accuracy": {"a": 1.5}}, ["accuracy", "a"]) is None  # not a fraction
    assert read_value({"accuracy": {"a": True}}, ["accuracy", "a"]) is None


def test_our_average_is_the_plain_mean_of_the_paper_columns():
    cells = our_cells(SPEC, {"accuracy": {"a": 0.2, "x": 0.9}, "by_source": {"m": {"b": {"accuracy": 0.5}}}})
    assert cells["A"] == pytest.approx(20.0) and cells["B"] == pytest.approx(50.0)
    assert cells["Avg"] == pytest.approx(35.0)  # X (ours alone) is not in it
    assert cells["X"] == pytest.approx(90.0)
    partial = our_cells(SPEC, {"accuracy": {"a": 0.2}})
    assert partial["B"] is None and partial["Avg"] is None  # an average over fewer columns would not compare
    assert set(our_cells(SPEC, None).values()) == {None}


def test_printed_average_that_is_not_the_mean_is_named():
    notes = unplain_averages(SPEC, ROWS)
    assert notes == ["Model-1B -log p: 16.00 printed, 15.00 by the mean"]  # neg_p's 35 is the mean of 30 and 40


def test_markdown_rows_hold_paper_ours_and_difference():
    summaries = {("r1", "nll"): {"accuracy": {"a": 0.125, "x": 0.5}, "by_source": {"m": {"b": {"accuracy": 0.25}}}}}
    ours = {(r.recipe, r.objective): our_cells(SPEC, summaries.get((r.recipe, r.objective))) for r in ROWS}
    text = paper_comparison_markdown("t", SPEC, ROWS, ours)
    assert "| backbone | objective | | A | B | Avg | X |" in text
    assert "| Model-1B | -log p | paper | 10.00 | 20.00 | 16.00 | - |" in text
    assert "| | | ours | 12.50 | 25.00 | 18.75 | 50.00 |" in text
    assert "| | | diff | +2.50 | +5.00 | +2.75 | - |" in text
    assert "| | | ours (not run yet) | - | - | - | - |" in text
    assert "(1-p^10)/10 (not in the paper)" in text
    assert "Jobs finished: 1 of 3" in text
    assert "Model-1B -log p: 16.00 printed, 15.00 by the mean" in text
    assert "X: ours alone" in text


def test_by_objective_layout_is_one_table_per_column(tmp_path):
    spec = {"layout": "by_objective", "columns": [{"name": "EM", "read": ["m", "em"]}, {"name": "JW", "read": ["m", "jw"]}],
            "published": {"r1": {"nll": {"EM": 1.0, "JW": 40.0}, "neg_p": {"EM": 0.0, "JW": 10.0}}}}
    rows = ROWS[:2]
    summaries = {("r1", "neg_p"): {"m": {"em": 0.0, "jw": 0.2}}}
    text = write_paper_comparison("figfont", spec, rows, summaries, tmp_path)
    assert "#### EM" in text and "#### JW" in text
    jw = text[text.index("#### JW"):]
    assert "| backbone | | -log p | -p |" in jw
    assert "| Model-1B | paper | 40.00 | 10.00 |" in jw
    assert "| | ours | - | 20.00 |" in jw and "| | diff | - | +10.00 |" in jw
    with (tmp_path / "paper_comparison.csv").open() as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 4  # 2 rows x 2 columns
    jw_row = next(r for r in lines if r["objective"] == "-p" and r["column"] == "JW")
    assert float(jw_row["diff"]) == pytest.approx(10.0)
    assert (tmp_path / "paper_comparison.png").stat().st_size > 0
    assert (tmp_path / "paper_comparison.md").read_text() == text


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="layout must be one of"):
        paper_comparison_markdown("t", {**SPEC, "layout": "sideways"}, ROWS, {(r.recipe, r.objective): {} for r in ROWS})
