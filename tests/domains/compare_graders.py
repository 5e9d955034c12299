"""Compare our graders with the paper authors' graders on the graded case sets.

    python tests/domains/compare_graders.py --authors PATH [--authors-python PYTHON]

PATH is a folder holding the authors' grading code, not part of this repository: the files of
their `evaluations/math` (parser.py, grader.py, utils.py and the latex2sympy folder) at its top,
and their `evaluations/medical/utils/extract_answer.py` as `medical/extract_answer.py`. Their math
code needs sympy 1.12, antlr4-python3-runtime 4.11.1, word2number, regex and numpy, which clash
with math-verify's; give a Python that has them with --authors-python (theirs run in a child
process; ours run here). Their math reading is their `extract_answer(output, "math")` and
`math_equal` (the gold answer read from "\\boxed{gold}" the same way, as their evaluation reads a
reference solution); their medical reading is `extract_overall_answer` (the last letter their
`match_choice` finds).

For each domain it prints the number of cases, the agreement between the two graders, and the
accuracy of each against the human verdicts in tests/domains/cases/, then the cases where they
disagree.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CASES = Path(__file__).resolve().parent / "cases"
FILES = {"math": "math_cases.jsonl", "medical": "medical_cases.jsonl"}

# Run in the authors' Python: argv = [authors folder, domain, cases file]; prints one JSON list.
CHILD = r'''
import json, signal, sys
folder, domain, path = sys.argv[1:4]
sys.path[:0] = [folder, folder + "/latex2sympy", folder + "/medical"]
cases = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]

class Late(Exception):
    pass

def late(*_):
    raise Late()

signal.signal(signal.SIGALRM, late)
verdicts = []
if domain == "math":
    from parser import extract_answer
    from grader import math_equal
    for case in cases:
        signal.alarm(10)
        try:
            pred = extract_answer(case["output"], "math")
            gold = extract_answer("\\boxed{" + case["gold"] + "}", "math")
            verdicts.append([pred, bool(math_equal(pred, gold))])
        except (Late, Exception) as error:
            verdicts.append([repr(error), False])
        finally:
            signal.alarm(0)
else:
    from extract_answer import extract_overall_answer
    for case in cases:
        letter, _ = extract_overall_answer(case["output"], case["options"], case["gold"])
        verdicts.append([letter, letter.lower() == case["gold"].lower()])
print("VERDICTS " + json.dumps(verdicts))
'''


def load(domain):
    with open(CASES / FILES[domain], encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def ours(domain, cases):
    from nemo_beyond_nll.domains import read_answer

    return [list(read_answer(domain, c["output"], {"answer": c["gold"], "options": c.get("options")})) for c in cases]


def theirs(domain, folder, python):
    done = subprocess.run(
        [python, "-c", CHILD, str(folder), domain, str(CASES / FILES[domain])],
        capture_output=True, text=True, check=True,
    )
    line = [l for l in done.stdout.splitlines() if l.startswith("VERDICTS ")][-1]
    return json.loads(line[len("VERDICTS "):])


def compare(domain, folder, python, show=20):
    cases = load(domain)
    mine, other = ours(domain, cases), theirs(domain, folder, python)
    human = [c["verdict"] == "correct" for c in cases]
    n = len(cases)
    agree = sum(a[1] == b[1] for a, b in zip(mine, other))
    right_ours = sum(a[1] == h for a, h in zip(mine, human))
    right_theirs = sum(b[1] == h for b, h in zip(other, human))
    print(f"{domain}: {n} cases; agreement {agree / n:.1%} ({agree}/{n}); accuracy vs human: "
          f"ours {right_ours / n:.1%} ({right_ours}/{n}), theirs {right_theirs / n:.1%} ({right_theirs}/{n})")
    split = [(c, a, b) for c, a, b in zip(cases, mine, other) if a[1] != b[1]]
    for case, a, b in split[:show]:
        print(f"  [{case['verdict']}] {case['note']}: ours read {a[0]!r} -> {a[1]}; theirs read {b[0]!r} -> {b[1]}")
    if len(split) > show:
        print(f"  ... and {len(split) - show} more")
    return dict(cases=n, agreement=agree / n, ours=right_ours / n, theirs=right_theirs / n)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors", required=True, type=Path, help="folder with the authors' grading code")
    parser.add_argument("--authors-python", default=sys.executable, help="a Python with their dependencies")
    parser.add_argument("--domains", default="math,medical")
    parser.add_argument("--show", type=int, default=20, help="disagreements to print per domain")
    args = parser.parse_args(argv)
    for domain in args.domains.split(","):
        compare(domain, args.authors.resolve(), args.authors_python, args.show)


if __name__ == "__main__":
    main()
