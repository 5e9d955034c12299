import pytest

from nemo_beyond_nll.domains import grade

MATH_ROW = {"prompt": "...", "completion": "...", "answer": r"\frac{1}{2}"}
MEDICAL_ROW = {"prompt": "...", "completion": "...", "answer": "C", "options": {"A": "Aspirin", "B": "Heparin", "C": "Warfarin"}}
FIGFONT_ROW = {"prompt": "...", "completion": "BAD", "answer": "BAD"}


@pytest.mark.parametrize(
    "domain, output, row, correct",
    [
        ("math", r"so $x = \boxed{0.5}$", MATH_ROW, True),
        ("math", r"so $x = \boxed{0.25}$", MATH_ROW, False),
        ("math", "0.5 with no box", MATH_ROW, False),
        ("math", None, MATH_ROW, False),
        ("medical", "Warfarin is taken by mouth. The answer is C.", MEDICAL_ROW, True),
        ("medical", "The answer is B.", MEDICAL_ROW, False),
        ("medical", "The answer is B or C.", MEDICAL_ROW, False),
        ("figfont", " bad\n", FIGFONT_ROW, True),
        ("figfont", "BAT", FIGFONT_ROW, False),
    ],
)
def test_grade(domain, output, row, correct):
    assert grade(domain, output, row) is correct


@pytest.mark.parametrize(
    "domain, row, message",
    [
        ("code", MATH_ROW, "unknown domain"),
        ("math", {"answer": 5}, "string 'answer'"),
        ("medical", {"answer": "C", "options": None}, "needs its 'options'"),
    ],
)
def test_bad_input(domain, row, message):
    with pytest.raises(ValueError, match=message):
        grade(domain, "x", row)


def test_built_rows_grade_their_own_completions(tmp_path):
    from nemo_beyond_nll.domains import build
    from tests.data.fixtures import m23k_row, numina_rows, read_jsonl, write_jsonl

    write_jsonl(tmp_path / "math.jsonl", numina_rows(5))
    write_jsonl(tmp_path / "medical.jsonl", [m23k_row(), m23k_row(answer="Warfarin, taken by mouth.")])
    build("math", tmp_path / "math.jsonl", tmp_path / "math", progress=False)
    build("medical", tmp_path / "medical.jsonl", tmp_path / "medical", progress=False)
    build("figfont", None, tmp_path / "figfont", size=5, seed=0, progress=False)
    for domain in ("math", "medical", "figfont"):
        rows = read_jsonl(tmp_path / domain / "all.jsonl")
        assert rows and all(grade(domain, row["completion"], row) for row in rows), domain
