"""The graders against a careful human grader's verdicts on realistic model outputs
(tests/domains/cases/*.jsonl: output, gold, verdict, note; medical rows also have options)."""

import json
from pathlib import Path

import pytest

from nemo_beyond_nll.domains import read_answer

CASES = Path(__file__).parent / "cases"


def load(name):
    with open(CASES / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


MATH = load("math_cases.jsonl")
MEDICAL = load("medical_cases.jsonl")


def test_case_sets_are_large_and_balanced():
    for cases, least in ((MATH, 200), (MEDICAL, 70)):
        verdicts = [case["verdict"] for case in cases]
        assert len(cases) >= least and set(verdicts) == {"correct", "incorrect"}
        assert min(verdicts.count("correct"), verdicts.count("incorrect")) >= len(cases) // 4


def disagreements(domain, cases):
    wrong = []
    for case in cases:
        row = {"answer": case["gold"], "options": case.get("options")}
        answer, correct = read_answer(domain, case["output"], row)
        if correct != (case["verdict"] == "correct"):
            wrong.append(f"{case['note']!r}: read {answer!r}, graded {correct}, human says {case['verdict']}")
    return wrong


@pytest.mark.parametrize("domain, cases", [("math", MATH), ("medical", MEDICAL)], ids=["math", "medical"])
def test_grader_agrees_with_human_verdicts(domain, cases):
    wrong = disagreements(domain, cases)
    assert not wrong, f"{len(wrong)} of {len(cases)} disagree:\n" + "\n".join(wrong)
