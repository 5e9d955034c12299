import pytest

from nemo_beyond_nll.domains import build
from nemo_beyond_nll.domains.figfont import INSTRUCTION, generate_puzzles
from nemo_beyond_nll.domains.figfont import score

from ..data.fixtures import read_jsonl, write_jsonl


def test_generation_is_seeded():
    first, again, other = (list(generate_puzzles(6, seed)) for seed in (3, 3, 4))
    assert first == again
    assert first != other
    assert first[1:] == other[:-1]  # item i comes from seed + i
    assert all(p["answer"].isalpha() and p["answer"].isupper() for p in first)
    assert all(p["question"].strip() and p["font"] for p in first)


def test_build_generated(tmp_path):
    report = build("figfont", None, tmp_path / "out", size=12, seed=7, validation_fraction=0.25, progress=False)
    rows = read_jsonl(tmp_path / "out" / "all.jsonl")
    assert report["rows_read"] == 12 and report["kept"] == len(rows) == 12 - report["dropped"]["duplicate"]
    puzzles = {p["answer"]: p for p in generate_puzzles(12, 7)}
    for row in rows:
        puzzle = puzzles[row["answer"]]
        # the drawing keeps its leading spaces; only trailing space before the instruction goes
        assert row["prompt"] == f"{puzzle['question'].rstrip()}\n\n{INSTRUCTION}"
        assert row["completion"] == row["answer"] and score(row["completion"], puzzle["answer"])
        assert row["font"] == puzzle["font"]


def test_task_options_reach_the_generator(tmp_path):
    build("figfont", None, tmp_path / "out", size=8, seed=0, task_options={"min_word_len": 5, "max_word_len": 5},
          progress=False)
    assert {len(r["answer"]) for r in read_jsonl(tmp_path / "out" / "all.jsonl")} == {5}


def test_build_from_file(tmp_path):
    rows = list(generate_puzzles(4, 1)) + [{"question": "   ", "answer": "X"}, {"question": "Q"}]
    write_jsonl(tmp_path / "puzzles.jsonl", rows)
    report = build("figfont", tmp_path / "puzzles.jsonl", tmp_path / "out", progress=False)
    assert report["kept"] == 4 and report["dropped"]["malformed"] == 2


@pytest.mark.parametrize(
    "options, message",
    [
        ({"size": 0}, "size must be a positive integer"),
        ({"seed": "x"}, "seed must be an integer"),
        ({"task_options": {"font_size": 3}}, "bad figlet_font task options"),
        ({"task_options": {"min_word_len": 6, "max_word_len": 3}}, "bad figlet_font task options"),
    ],
)
def test_bad_generation_options(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        build("figfont", None, tmp_path / "out", progress=False, **options)
