"""Small source files for the builder tests, written under a test's tmp_path."""

import json


def write_jsonl(path, rows):
    """Rows are written as JSON; a str is written as the raw line (to make broken lines)."""
    with open(path, "w", encoding="utf-8") as out:
        for row in rows:
            out.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def read_jsonl(path):
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def numina_row(i, answer=None):
    answer = i * 7 if answer is None else answer
    return {
        "source": "synthetic",
        "problem": f"Problem {i}: what is {i} times 7?",
        "solution": f"We multiply: {i} \\cdot 7 = {answer}. So the answer is $\\boxed{{{answer}}}$.",
        "messages": [],
    }


def numina_rows(n):
    return [numina_row(i) for i in range(n)]


M23K_PROMPT = (
    "A 70-year-old woman with atrial fibrillation needs long-term anticoagulation. Which drug?\n"
    "A. Aspirin\nB. Heparin\nC. Warfarin\nD. Clopidogrel"
)


def m23k_row(letter="C", answer="The answer is C. Warfarin.", **changes):
    row = {
        "prompt": M23K_PROMPT,
        "reasoning": "Long-term oral anticoagulation is needed; heparin is parenteral.",
        "distilled_answer_string": answer,
        "answer_letter": letter,
        "answer_string": "Warfarin",
        "source": "synthetic",
    }
    row.update(changes)
    return row
