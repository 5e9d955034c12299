from collections import Counter

import pytest

from nemo_beyond_nll.domains.figfont import INSTRUCTION as FIGFONT_INSTRUCTION
from nemo_beyond_nll.domains.figfont import figfont_example, generate_puzzles
from nemo_beyond_nll.domains.math import math_example
from nemo_beyond_nll.domains.medical import medical_example
from nemo_beyond_nll.eval.benchmark_sets import (
    BENCHMARKS,
    FIGFONT_SEED,
    MMLU_MEDICAL_SUBJECTS,
    benchmark_source,
    load_benchmark,
    load_benchmarks,
)
from nemo_beyond_nll.domains import grade
from nemo_beyond_nll.domains.medical import parse_options
from tests.data.fixtures import write_jsonl

from .benchmark_rows import FIXTURES, fixture_lines


def of_domain(domain):
    return tuple(name for name, bench in BENCHMARKS.items() if bench.domain == domain)


def test_every_benchmark_has_fixtures_and_a_domain():
    assert set(FIXTURES) == set(BENCHMARKS)
    assert {bench.domain for bench in BENCHMARKS.values()} == {"math", "medical", "figfont"}
    assert {domain: of_domain(domain) for domain in ("math", "medical", "figfont")} == {
        "math": ("math500", "minerva_math", "olympiadbench", "aime24", "amc23"),
        "medical": ("medmcqa", "medqa", "pubmedqa", "mmlu_medical", "m1_eval"),
        "figfont": ("figfont",),
    }


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_rows_from_a_local_file(tmp_path, name):
    good, bad, expected = FIXTURES[name]
    path = write_jsonl(tmp_path / f"{name}.jsonl", fixture_lines(name))
    loaded = load_benchmark(name, source=path)
    assert loaded.name == name and loaded.domain == BENCHMARKS[name].domain and loaded.source == str(path)
    assert [(r["id"], r["answer"], r.get("options")) for r in loaded.rows] == expected
    assert loaded.rows_read == len(good) + len(bad)
    assert loaded.skipped == dict(Counter(reason for _, reason in bad))
    for row in loaded.rows:
        keys = {"id", "prompt", "answer", "options"} if row.get("options") else {"id", "prompt", "answer"}
        assert set(row) == (keys | {"source"} if name == "m1_eval" else keys)


def _right_output(domain, row):
    if domain == "math":
        return f"Some work.\n\nThe final answer is $\\boxed{{{row['answer']}}}$."
    if domain == "medical":
        return f"Reasoning about the options.\n\nThe answer is {row['answer']}."
    return row["answer"]


def _wrong_output(domain, row):
    if domain == "math":
        return "The final answer is $\\boxed{123456789}$."
    if domain == "medical":
        wrong = next(letter for letter in row["options"] if letter != row["answer"])
        return f"The answer is {wrong}."
    return row["answer"] + "X"


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_rows_grade_right_and_wrong_answers(tmp_path, name):
    domain = BENCHMARKS[name].domain
    rows = load_benchmark(name, source=write_jsonl(tmp_path / "rows.jsonl", FIXTURES[name][0])).rows
    assert rows
    for row in rows:
        assert grade(domain, _right_output(domain, row), row), row
        assert not grade(domain, _wrong_output(domain, row), row), row


@pytest.mark.parametrize("name", of_domain("math"))
def test_math_prompts_are_the_builders(tmp_path, name):
    rows = load_benchmark(name, source=write_jsonl(tmp_path / "rows.jsonl", FIXTURES[name][0])).rows
    for raw, row in zip(FIXTURES[name][0], rows):
        problem = raw.get("problem") or raw.get("question") or raw.get("Problem")
        if raw.get("context"):
            problem = f"{raw['context']}\n{problem}"
        built = math_example({"problem": problem, "solution": "\\boxed{1}"})
        assert row["prompt"] == built.prompt


@pytest.mark.parametrize("name", of_domain("medical"))
def test_medical_prompts_are_the_builders(tmp_path, name):
    rows = load_benchmark(name, source=write_jsonl(tmp_path / "rows.jsonl", FIXTURES[name][0])).rows
    for row in rows:
        # The question with its lettered options, as m23k's prompt field holds it.
        question = row["prompt"].rsplit("\n\n", 1)[0]
        built = medical_example({"prompt": question, "reasoning": "Thinking it over.", "distilled_answer_string": "Finished.",
                                 "answer_letter": row["answer"]})
        assert row["prompt"] == built.prompt
        assert built.fields["options"] == row["options"]  # the builder reads the same options back
        assert parse_options(row["prompt"]) == row["options"]


def test_option_text_on_several_lines_stays_one_option(tmp_path):
    raw = dict(FIXTURES["medmcqa"][0][0], opb="Pheny-\n  toin\n(oral)")
    row = load_benchmark("medmcqa", source=write_jsonl(tmp_path / "rows.jsonl", [raw])).rows[0]
    assert row["options"]["B"] == "Pheny- toin (oral)"
    assert parse_options(row["prompt"]) == row["options"]


def test_pubmedqa_puts_the_abstract_before_the_question(tmp_path):
    row = load_benchmark("pubmedqa", source=write_jsonl(tmp_path / "rows.jsonl", FIXTURES["pubmedqa"][0])).rows[0]
    assert row["prompt"].startswith("Background sentence.\nResults sentence.\n\nDoes aspirin lower the risk?\nA. yes\n")


def test_olympiadbench_context_comes_first(tmp_path):
    rows = load_benchmark("olympiadbench", source=write_jsonl(tmp_path / "r.jsonl", FIXTURES["olympiadbench"][0])).rows
    assert rows[1]["prompt"].startswith("Let $f(x)=x+1$.\nCompute $f(1)$.\n\n")


def test_figfont_prompts_are_the_builders_and_generated_far_from_training():
    loaded = load_benchmark("figfont", num_samples=3)
    puzzles = list(generate_puzzles(3, FIGFONT_SEED))
    assert [r["prompt"] for r in loaded.rows] == [figfont_example(p).prompt for p in puzzles]
    assert [r["answer"] for r in loaded.rows] == [p["answer"] for p in puzzles]
    assert all(r["prompt"].endswith(f"\n\n{FIGFONT_INSTRUCTION}") for r in loaded.rows)
    assert loaded.source == f"reasoning_gym:figlet_font(size=3, seed={FIGFONT_SEED})"
    assert [r["id"] for r in loaded.rows] == ["0", "1", "2"]
    assert FIGFONT_SEED > 100_000_000  # item i comes from seed + i: far from any training seed


def test_num_samples_keeps_the_first_usable_rows(tmp_path):
    good, bad, expected = FIXTURES["medmcqa"]
    path = write_jsonl(tmp_path / "rows.jsonl", [row for row, _ in bad] + good)
    loaded = load_benchmark("medmcqa", source=path, num_samples=1)
    assert [r["id"] for r in loaded.rows] == [expected[0][0]]
    assert loaded.rows_read == len(bad) + 1  # stops reading once it has enough
    assert sum(loaded.skipped.values()) == len(bad)


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "3"])
def test_bad_num_samples(tmp_path, value):
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        load_benchmark("math500", source=write_jsonl(tmp_path / "r.jsonl", FIXTURES["math500"][0]), num_samples=value)


def test_hub_path_asks_datasets_for_the_registered_id_config_and_split(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        subject = name or "none"
        return [{"question": f"{subject}?", "choices": ["w", "x", "y", "z"], "answer": 3}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load_benchmark("mmlu_medical")
    assert calls == [("cais/mmlu", subject, "test") for subject in MMLU_MEDICAL_SUBJECTS]
    assert [r["prompt"].split("?")[0] for r in loaded.rows] == list(MMLU_MEDICAL_SUBJECTS)
    assert [r["id"] for r in loaded.rows] == [str(i) for i in range(6)]  # positions across the subjects
    assert loaded.source == f"cais/mmlu ({', '.join(MMLU_MEDICAL_SUBJECTS)}) [test]"

    calls.clear()
    for name in ("math500", "olympiadbench", "aime24", "medmcqa", "pubmedqa"):
        monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, split=None: calls.append((path, name, split)) or [])
        assert load_benchmark(name).rows == []
    assert calls == [
        ("HuggingFaceH4/MATH-500", None, "test"),
        ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"),
        ("HuggingFaceH4/aime_2024", None, "train"),
        ("openlifescienceai/medmcqa", None, "validation"),
        ("qiaojin/PubMedQA", "pqa_labeled", "train"),
    ]


def test_benchmark_source(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    given = write_jsonl(files / "anything.jsonl", FIXTURES["amc23"][0])
    folder = tmp_path / "data"
    (folder / "olympiadbench").mkdir(parents=True)  # laid out like Qwen2.5-Math's evaluation/data
    write_jsonl(folder / "olympiadbench" / "test.jsonl", FIXTURES["olympiadbench"][0])
    write_jsonl(folder / "amc23.jsonl", FIXTURES["amc23"][0])

    assert benchmark_source("amc23", files={"amc23": given}, directory=folder) == given  # the mapping wins
    assert benchmark_source("amc23", directory=folder) == folder / "amc23.jsonl"
    assert benchmark_source("olympiadbench", directory=folder) == folder / "olympiadbench"
    assert benchmark_source("math500", directory=folder) is None  # then the hub
    assert benchmark_source("math500") is None
    with pytest.raises(ValueError, match="file for benchmark 'amc23' not found"):
        benchmark_source("amc23", files={"amc23": tmp_path / "missing.jsonl"})
    with pytest.raises(ValueError, match="benchmark directory not found"):
        benchmark_source("amc23", directory=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown benchmark 'gsm8k'"):
        benchmark_source("gsm8k")

    loaded = load_benchmarks(["olympiadbench", "amc23"], directory=folder)
    assert [(b.name, len(b.rows)) for b in loaded] == [("olympiadbench", 2), ("amc23", 2)]


def test_load_benchmarks_checks_names_before_loading(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", FIXTURES["amc23"][0])
    with pytest.raises(ValueError, match="unknown benchmark 'amc24'"):
        load_benchmarks(["amc23"], files={"amc23": good, "amc24": good})
    with pytest.raises(ValueError, match="must not repeat"):
        load_benchmarks(["amc23", "amc23"], files={"amc23": good})
    with pytest.raises(ValueError, match="non-empty list"):
        load_benchmarks("amc23")
    bad = write_jsonl(tmp_path / "bad.jsonl", ["{oops", {"question": "no answer"}])
    with pytest.raises(ValueError, match=r"'amc23' has no usable rows .*2 read, skipped: \{'malformed': 2\}"):
        load_benchmarks(["amc23"], files={"amc23": bad})


def test_gpu_recipes_name_benchmarks_of_their_domain():
    from pathlib import Path

    from nemo_beyond_nll.recipe import load_recipe

    # a recipe is named <backbone>_<domain>.yaml
    recipes = {p.stem.rpartition("_")[2]: load_recipe(p) for p in sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))}
    bridge = [(domain, cfg) for domain, cfg in recipes.items() if cfg.engine == "bridge"]
    assert bridge
    for domain, cfg in bridge:
        assert cfg.eval.benchmarks, cfg.name
        assert {BENCHMARKS[name].domain for name in cfg.eval.benchmarks} == {domain}, cfg.name
        assert cfg.eval.benchmark_dir is None and dict(cfg.eval.benchmark_files) == {}  # the hub by default
