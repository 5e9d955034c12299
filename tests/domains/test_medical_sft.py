import pytest

from nemo_beyond_nll.domains import build
from nemo_beyond_nll.domains.medical import INSTRUCTION
from nemo_beyond_nll.domains.medical import extract_choice

from ..data.fixtures import M23K_PROMPT, m23k_row, read_jsonl, write_jsonl

OPTIONS = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Clopidogrel"}


def build_rows(tmp_path, rows, **options):
    write_jsonl(tmp_path / "m23k.jsonl", rows)
    report = build("medical", tmp_path / "m23k.jsonl", tmp_path / "out", validation_fraction=0.0, progress=False, **options)
    return report, read_jsonl(tmp_path / "out" / "train.jsonl")


def test_m23k_row(tmp_path):
    report, (row,) = build_rows(tmp_path, [m23k_row()])
    assert row["prompt"] == f"{M23K_PROMPT}\n\n{INSTRUCTION}"
    assert row["completion"] == f"{m23k_row()['reasoning']}\n\nThe answer is C. Warfarin."
    assert row["answer"] == "C" and row["options"] == OPTIONS
    assert report["notes"] == {}


def test_every_completion_ends_gradable(tmp_path):
    rows = [
        m23k_row(answer="Warfarin is the long-term oral anticoagulant."),  # states no letter: a line is added
        m23k_row(answer="**Answer: C**"),
        m23k_row(letter="(b)", answer=r"So: $\boxed{B}$"),
        m23k_row(),
    ]
    report, kept = build_rows(tmp_path, rows)
    assert report["kept"] == 4 and report["notes"] == {"answer_line_added": 1}
    assert kept[0]["completion"].endswith("Warfarin is the long-term oral anticoagulant.\n\nThe answer is C.")
    assert [r["answer"] for r in kept] == ["C", "C", "B", "C"]
    assert all(extract_choice(r["completion"], r["options"]) == r["answer"] for r in kept)


def test_dropped_rows(tmp_path):
    rows = [
        m23k_row(),
        m23k_row(answer="The answer is B."),  # disagrees with answer_letter C
        m23k_row(letter="Z"),
        m23k_row(letter="E"),  # a letter, but not one of the four options
        m23k_row(letter="CD"),
        m23k_row(reasoning=None),
        m23k_row(options=5),
        {"prompt": "no other fields"},
        "not json",
        m23k_row(),  # duplicate
    ]
    report, kept = build_rows(tmp_path, rows)
    assert report["kept"] == 1 and len(kept) == 1
    assert report["dropped"] == {
        "malformed": 4, "duplicate": 1, "too_long": 0, "bad_answer_letter": 3, "answer_disagrees_with_letter": 1,
    }


def test_options_field_and_missing_options(tmp_path):
    question_only = "Which anticoagulant is taken by mouth for years?"
    rows = [
        m23k_row(prompt=question_only, options=["Heparin", "Warfarin"], letter="B", answer="The answer is B."),
        m23k_row(prompt=question_only + " (no options listed)", letter="B", answer="Warfarin."),
    ]
    report, kept = build_rows(tmp_path, rows)
    assert kept[0]["options"] == {"A": "Heparin", "B": "Warfarin"}
    assert kept[1]["options"] is None and kept[1]["completion"].endswith("Warfarin.")
    assert report["notes"] == {"options_not_found": 1}


def test_configurable_fields(tmp_path):
    row = {"question": M23K_PROMPT, "explanation": "It is Warfarin.", "answer_idx": "C"}
    report, (kept,) = build_rows(tmp_path, [row], fields={"prompt": "question", "answer": "explanation",
                                                          "reasoning": None, "letter": "answer_idx"})
    assert kept["completion"] == "It is Warfarin.\n\nThe answer is C." and kept["answer"] == "C"


@pytest.mark.parametrize(
    "fields, message",
    [({"solution": "x"}, "unknown medical fields"), ({"reasoning": None, "answer": None}, "reasoning field, an answer field")],
)
def test_bad_fields(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        build_rows(tmp_path, [m23k_row()], fields=fields)
