import json

import pytest

from nemo_beyond_nll.eval.benchmark_sets import LoadedBenchmark, load_benchmark
from nemo_beyond_nll.eval.compare import compare_runs, load_summary
from nemo_beyond_nll.domains import grade
from nemo_beyond_nll.eval.runner import evaluate_benchmarks, grade_output
from tests.data.fixtures import read_jsonl, write_jsonl

from .benchmark_rows import FIXTURES

MATH_RAW = [
    {"unique_id": "q1", "problem": "What is 1+1?", "answer": "2"},
    {"unique_id": "q2", "problem": "Half of 1?", "answer": "\\frac{1}{2}"},
    {"unique_id": "q3", "problem": "What is 2*3?", "answer": "6"},
    {"unique_id": "q4", "problem": "What is 10-3?", "answer": "7"},
    {"problem": "broken: no answer"},
]
# id -> what the fake model says, and whether that is right
MATH_OUTPUTS = {
    "q1": ("So the answer is $\\boxed{2}$.", "2", True),
    "q2": ("We get $\\boxed{0.5}$.", "0.5", True),  # equivalent, not equal
    "q3": ("It is $\\boxed{5}$.", "5", False),
    "q4": ("Seven.", None, False),  # no box: no answer
}
MEDICAL_OUTPUTS = {
    "m1": ("Absence seizures respond to ethosuximide.\n\nThe answer is A.", "A", True),
    "m2": ("Scurvy is vitamin C deficiency.\n\nThe answer is D.", "D", False),
}
FIGFONT_OUTPUTS = {
    "0": ("  ea \n", "ea", True),  # case and spacing are forgiven
    "p2": ("O K", "o k", False),
}
OUTPUTS = {"math500": MATH_OUTPUTS, "medmcqa": MEDICAL_OUTPUTS, "figfont": FIGFONT_OUTPUTS}
ACCURACY = {"math500": 2 / 4, "medmcqa": 1 / 2, "figfont": 1 / 2}


@pytest.fixture
def benchmarks(tmp_path):
    sources = {
        "math500": write_jsonl(tmp_path / "math500.jsonl", MATH_RAW),
        "medmcqa": write_jsonl(tmp_path / "medmcqa.jsonl", FIXTURES["medmcqa"][0]),
        "figfont": write_jsonl(tmp_path / "figfont.jsonl", FIXTURES["figfont"][0]),
    }
    return [load_benchmark(name, source=path) for name, path in sources.items()]


class FakeModel:
    """Answers each prompt as OUTPUTS says (by the prompt's row id); records every batch it gets."""

    def __init__(self, benchmarks, fail_after_batches=None):
        self.by_prompt = {row["prompt"]: OUTPUTS[b.name][row["id"]][0] for b in benchmarks for row in b.rows}
        self.batches = []
        self.fail_after_batches = fail_after_batches

    def __call__(self, prompts):
        if self.fail_after_batches is not None and len(self.batches) >= self.fail_after_batches:
            raise RuntimeError("the GPU went away")
        self.batches.append(list(prompts))
        return [self.by_prompt[p] for p in prompts]


def test_end_to_end(tmp_path, benchmarks):
    model = FakeModel(benchmarks)
    out = tmp_path / "run"
    summary = evaluate_benchmarks(benchmarks, model, out, batch_size=3, progress=False, objective="neg_p()", loss="neg_p")

    assert summary["accuracy"] == ACCURACY
    assert summary["num_samples"] == {"math500": 4, "medmcqa": 2, "figfont": 2}
    assert summary["average"] == pytest.approx((0.5 + 0.5 + 0.5) / 3)
    assert summary["objective"] == "neg_p()" and summary["loss"] == "neg_p"
    assert summary["skipped_rows"] == {"math500": {"malformed": 1}, "medmcqa": {}, "figfont": {}}
    assert summary["sources"]["math500"] == str(tmp_path / "math500.jsonl")
    assert json.loads((out / "summary.json").read_text()) == summary
    assert [len(b) for b in model.batches] == [3, 1, 2, 2]  # batches never span two benchmarks

    for bench in benchmarks:
        records = read_jsonl(out / "eval" / f"{bench.name}.jsonl")
        assert [r["id"] for r in records] == [row["id"] for row in bench.rows]
        for record, row in zip(records, bench.rows):
            output, answer, correct = OUTPUTS[bench.name][row["id"]]
            assert record == {"id": row["id"], "prompt": row["prompt"], "output": output, "answer": answer,
                              "gold": row["answer"], "correct": correct}
            assert grade(bench.domain, output, row) is correct  # the same verdict as domains.grade
    assert sorted(p.name for p in (out / "eval").iterdir()) == ["figfont.jsonl", "math500.jsonl", "medmcqa.jsonl"]

    # The summary is what compare reads.
    assert load_summary(out).accuracy == ACCURACY
    table = compare_runs([out], tmp_path / "compare")
    assert "| neg_p() | 50.0 | 50.0 | 50.0 | 50.0 |" in table


def test_a_finished_run_is_not_generated_again(tmp_path, benchmarks):
    first = evaluate_benchmarks(benchmarks, FakeModel(benchmarks), tmp_path, progress=False, objective="nll")

    def no_model(prompts):
        raise AssertionError("nothing should be generated")

    again = evaluate_benchmarks(benchmarks, no_model, tmp_path, progress=False, objective="nll")
    assert again == first


def test_resume_after_a_crash_generates_only_the_rest(tmp_path, benchmarks):
    crashing = FakeModel(benchmarks, fail_after_batches=1)
    with pytest.raises(RuntimeError, match="the GPU went away"):
        evaluate_benchmarks(benchmarks, crashing, tmp_path, batch_size=3, progress=False, objective="nll")
    partial = tmp_path / "eval" / "math500.jsonl.partial"
    assert [r["id"] for r in read_jsonl(partial)] == ["q1", "q2", "q3"]
    assert not (tmp_path / "eval" / "math500.jsonl").exists() and not (tmp_path / "summary.json").exists()

    resumed = FakeModel(benchmarks)
    summary = evaluate_benchmarks(benchmarks, resumed, tmp_path, batch_size=3, progress=False, objective="nll")
    assert [len(b) for b in resumed.batches] == [1, 2, 2]  # q4, then the other two benchmarks
    assert resumed.batches[0] == [benchmarks[0].rows[3]["prompt"]]
    assert summary["accuracy"] == ACCURACY
    assert not partial.exists()
    assert [r["id"] for r in read_jsonl(tmp_path / "eval" / "math500.jsonl")] == ["q1", "q2", "q3", "q4"]


def test_resume_drops_a_cut_line_and_records_of_other_problems(tmp_path, benchmarks):
    math = benchmarks[0]
    evaluate_benchmarks([math], FakeModel(benchmarks), tmp_path, progress=False, objective="nll")
    records = read_jsonl(tmp_path / "eval" / "math500.jsonl")
    (tmp_path / "eval" / "math500.jsonl").unlink()
    partial = tmp_path / "eval" / "math500.jsonl.partial"
    # q1 is kept, q2's prompt has changed since, and the last line was cut short by a crash
    changed = dict(records[1], prompt="an older prompt", output="stale")
    partial.write_text(json.dumps(records[0]) + "\n" + json.dumps(changed) + "\n" + json.dumps(records[2])[:20])

    model = FakeModel(benchmarks)
    summary = evaluate_benchmarks([math], model, tmp_path, progress=False, objective="nll")
    assert model.batches == [[row["prompt"] for row in math.rows[1:]]]
    assert summary["accuracy"] == {"math500": 0.5}
    assert read_jsonl(tmp_path / "eval" / "math500.jsonl") == records


def test_num_samples_counts_the_first_problems_and_keeps_longer_files(tmp_path, benchmarks):
    math = benchmarks[0]
    summary = evaluate_benchmarks([math], FakeModel(benchmarks), tmp_path, num_samples=2, progress=False, objective="nll")
    assert summary["accuracy"] == {"math500": 1.0} and summary["num_samples"] == {"math500": 2}
    assert len(read_jsonl(tmp_path / "eval" / "math500.jsonl")) == 2

    more = FakeModel(benchmarks)  # more problems: only the new ones are generated
    summary = evaluate_benchmarks([math], more, tmp_path, num_samples=3, progress=False, objective="nll")
    assert more.batches == [[math.rows[2]["prompt"]]]
    assert summary["accuracy"] == {"math500": pytest.approx(2 / 3)}

    def no_model(prompts):
        raise AssertionError("nothing should be generated")

    summary = evaluate_benchmarks([math], no_model, tmp_path, num_samples=1, progress=False, objective="nll")
    assert summary["num_samples"] == {"math500": 1} and summary["accuracy"] == {"math500": 1.0}
    assert len(read_jsonl(tmp_path / "eval" / "math500.jsonl")) == 3  # answers already paid for stay


def test_benchmarks_by_name_are_loaded(tmp_path):
    answers = {}

    def model(prompts):
        answers.update({p: "WRONG" for p in prompts})
        return ["WRONG" for _ in prompts]

    summary = evaluate_benchmarks(["figfont"], model, tmp_path, num_samples=2, progress=False, objective="nll")
    assert summary["num_samples"] == {"figfont": 2} and summary["accuracy"] == {"figfont": 0.0}
    assert len(answers) == 2 and summary["sources"]["figfont"].startswith("reasoning_gym:figlet_font(size=2")


def test_progress_bar(tmp_path, benchmarks, capsys):
    evaluate_benchmarks(benchmarks[:1], FakeModel(benchmarks), tmp_path, objective="nll")
    err = capsys.readouterr().err
    assert "math500" in err and "4/4" in err


@pytest.mark.parametrize(
    "outputs, message",
    [
        (lambda prompts: prompts[:-1], "one string per prompt: 3 prompts, got 2"),
        (lambda prompts: "one string", "one string per prompt: 3 prompts, got str"),
        (lambda prompts: [None] * len(prompts), "must return strings, got NoneType"),
    ],
)
def test_bad_generate(tmp_path, benchmarks, outputs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_benchmarks(benchmarks[:1], outputs, tmp_path, batch_size=3, progress=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"num_samples": 0}, "num_samples must be a positive integer"),
        ({"objective": " "}, "objective must be a non-empty string"),
    ],
)
def test_bad_options(tmp_path, benchmarks, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_benchmarks(benchmarks, FakeModel(benchmarks), tmp_path, progress=False, **kwargs)


def test_bad_benchmarks(tmp_path, benchmarks):
    model = FakeModel(benchmarks)
    with pytest.raises(ValueError, match="non-empty list"):
        evaluate_benchmarks([], model, tmp_path)
    with pytest.raises(ValueError, match="non-empty list"):
        evaluate_benchmarks("math500", model, tmp_path)
    with pytest.raises(ValueError, match="must not repeat"):
        evaluate_benchmarks([benchmarks[0], benchmarks[0]], model, tmp_path)
    with pytest.raises(ValueError, match="unknown benchmark 'gsm8k'"):
        evaluate_benchmarks(["gsm8k"], model, tmp_path)
    empty = LoadedBenchmark("amc23", "math", "nowhere", [])
    with pytest.raises(ValueError, match="'amc23' has no rows"):
        evaluate_benchmarks([empty], model, tmp_path)
    with pytest.raises(ValueError, match="generate must be callable"):
        evaluate_benchmarks(benchmarks, None, tmp_path)
    assert not (tmp_path / "eval").exists()


def test_grade_output_unknown_domain():
    with pytest.raises(ValueError, match="unknown domain 'code'"):
        grade_output("code", "x", {"answer": "x"})
