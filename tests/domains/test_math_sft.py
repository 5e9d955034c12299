import datasets

from nemo_beyond_nll.domains import build
from nemo_beyond_nll.domains.math import HUB_ID, INSTRUCTION
from nemo_beyond_nll.domains.math import extract_answer

from ..data.fixtures import numina_row, numina_rows, read_jsonl, write_jsonl


def test_malformed_and_unboxed_rows_are_counted(tmp_path):
    no_box = numina_row(90)
    no_box["solution"] = "The answer is 630."
    cut_off = numina_row(91)
    cut_off["solution"] = r"So $\boxed{\frac{1}{2}$"
    lines = numina_rows(6) + [
        numina_row(2),  # duplicate
        no_box,
        cut_off,
        {"problem": "no solution field"},
        {"problem": "numeric solution", "solution": 5},
        {"problem": "   ", "solution": r"\boxed{1}"},
        [1, 2],
        "{not json",
        "",
    ]
    write_jsonl(tmp_path / "numina.jsonl", lines)
    report = build("math", tmp_path / "numina.jsonl", tmp_path / "out", validation_fraction=0.2, progress=False)
    assert report["rows_read"] == 14 and report["kept"] == 6
    assert report["dropped"] == {"malformed": 5, "duplicate": 1, "too_long": 0, "no_boxed_answer": 2}
    assert report["dropped_row_indices"]["no_boxed_answer"] == [7, 8]
    assert report["dropped_row_indices"]["malformed"] == [9, 10, 11, 12, 13]


def test_rows_hold_prompt_completion_and_answer(tmp_path):
    write_jsonl(tmp_path / "numina.jsonl", [numina_row(4)])
    build("math", tmp_path / "numina.jsonl", tmp_path / "out", validation_fraction=0.0, progress=False)
    (row,) = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert row["prompt"] == f"Problem 4: what is 4 times 7?\n\n{INSTRUCTION}"
    assert row["completion"] == numina_row(4)["solution"]
    assert row["answer"] == "28" == extract_answer(row["completion"])


def test_custom_fields_and_no_instruction(tmp_path):
    rows = [{"question": r["problem"], "answer_text": r["solution"]} for r in numina_rows(3)]
    write_jsonl(tmp_path / "rows.jsonl", rows)
    report = build(
        "math", tmp_path / "rows.jsonl", tmp_path / "out", problem_field="question", solution_field="answer_text",
        instruction="", validation_fraction=0.0, progress=False,
    )
    assert report["kept"] == 3
    assert [r["prompt"] for r in read_jsonl(tmp_path / "out" / "train.jsonl")] == [r["question"] for r in rows]


def test_parquet_source_and_limit(tmp_path):
    datasets.Dataset.from_list(numina_rows(8)).to_parquet(str(tmp_path / "numina.parquet"))
    report = build("math", tmp_path / "numina.parquet", tmp_path / "out", limit=5, progress=False)
    assert report["rows_read"] == 5 and report["kept"] == 5


def test_default_source_is_the_hub_dataset(tmp_path, monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return numina_rows(3)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    report = build("math", None, tmp_path / "out", progress=False)
    assert calls == [(HUB_ID, None, "train")] == [("AI-MO/NuminaMath-CoT", None, "train")]
    assert report["source"] == HUB_ID and report["kept"] == 3
