"""Small raw rows for every benchmark, shaped like the hub's (and Qwen2.5-Math's local copies).

FIXTURES[name] = (good rows, [(bad row, reason)], expected (id, answer, options) per good row).
A bad row given as a str is written as a raw line (to make a broken JSON line).
"""

MEDMCQA_GOOD = [
    {"id": "m1", "question": "Drug of choice for absence seizures?", "opa": "Ethosuximide", "opb": "Phenytoin",
     "opc": "Carbamazepine", "opd": "Gabapentin", "cop": 0, "choice_type": "single", "subject_name": "Pharmacology"},
    {"id": "m2", "question": "Vitamin deficient in scurvy?", "opa": "A", "opb": "B12", "opc": "C", "opd": "D",
     "cop": 2, "choice_type": "single"},
]
MEDQA_GOOD = [
    {"question": "A 30-year-old with fever. Next step?", "answer": "Blood culture",
     "options": {"A": "Blood culture", "B": "CT scan", "C": "Discharge", "D": "Biopsy"}, "answer_idx": "A",
     "meta_info": "step1"},
    # only the answer's text: its option is found by text
    {"question": "Which nerve is injured?", "answer": "ulnar nerve",
     "options": {"A": "Radial nerve", "B": "Median nerve", "C": "Ulnar nerve", "D": "Axillary nerve"}},
    # the "-hf" layout
    {"id": "hf-1", "sent1": "Most common site of ectopic pregnancy?", "sent2": "", "ending0": "Ovary",
     "ending1": "Ampulla", "ending2": "Isthmus", "ending3": "Cervix", "label": 1},
]
PUBMEDQA_GOOD = [
    {"pubid": 111, "question": "Does aspirin lower the risk?",
     "context": {"contexts": ["Background sentence.", "Results sentence."], "labels": ["BACKGROUND", "RESULTS"]},
     "long_answer": "...", "final_decision": "yes"},
    {"pubid": 222, "question": "Is the test useful?", "context": {"contexts": ["Only one paragraph."]},
     "final_decision": "maybe"},
]
MMLU_GOOD = [
    {"question": "Which bone is in the forearm?", "subject": "anatomy", "choices": ["Femur", "Radius", "Tibia", "Humerus"],
     "answer": 1},
    {"question": "Down syndrome is trisomy of?", "subject": "medical_genetics", "choices": ["13", "18", "21", "X"],
     "answer": 2},
]

# The m1 evaluation set as the authors' processed copy holds it: one list, each row with its source
# (the hub's file groups the same rows as {source: [rows]}).
M1_GOOD = [
    {"question": "Drug of choice for absence seizures?", "answer": "Ethosuximide", "answer_idx": "A",
     "options": {"A": "Ethosuximide", "B": "Phenytoin", "C": "Carbamazepine", "D": "Gabapentin"},
     "source": "MedMCQA_validation"},
    {"question": "Most common site of ectopic pregnancy?", "answer": "Ampulla", "answer_idx": "C",
     "options": {"A": "Ovary", "B": "Isthmus", "C": "Ampulla", "D": "Cervix", "E": "Fimbria"},
     "source": "MedBullets_op5"},
    {"question": "Does aspirin cure the common cold?", "answer": "no", "answer_idx": "B",
     "options": {"A": "yes", "B": "no", "C": "maybe"}, "source": "PubMedQA"},
]

FIXTURES = {
    "math500": (
        [{"problem": "What is $1+1$?", "solution": "It is $\\boxed{2}$.", "answer": "2", "subject": "Algebra",
          "level": 1, "unique_id": "test/algebra/1.json"},
         {"problem": "Simplify $\\frac{2}{4}$.", "answer": "\\frac{1}{2}", "unique_id": "test/algebra/2.json"}],
        [("{not json", "malformed"), ({"problem": "No answer here"}, "malformed"),
         ({"problem": "  ", "answer": "3"}, "malformed"), ({"problem": "Q", "answer": True}, "bad_answer"),
         ({"problem": "Again", "answer": "4", "unique_id": "test/algebra/1.json"}, "duplicate_id")],
        [("test/algebra/1.json", "2", None), ("test/algebra/2.json", "\\frac{1}{2}", None)],
    ),
    "minerva_math": (
        # Qwen2.5-Math's copy: problem + worked solution; the hub's: question + answer
        [{"problem": "Find the mass in kg.", "solution": "Thus $m = \\boxed{3.5}$ kg.", "type": "Physics", "idx": 0},
         {"question": "Speed of light in m/s?", "answer": "3 \\times 10^8"}],
        [({"problem": "Solution without box", "solution": "It is 5."}, "malformed"), (["a", "list"], "malformed")],
        [("0", "3.5", None), ("1", "3 \\times 10^8", None)],
    ),
    "olympiadbench": (
        [{"id": 1606, "question": "Find all $x$ with $x^2=4$.", "final_answer": ["$2$", "$-2$"],
          "is_multiple_answer": True, "context": None},
         {"id": 1607, "context": "Let $f(x)=x+1$.", "question": "Compute $f(1)$.", "final_answer": "['$2$']"}],
        [({"id": 1608, "question": "Q", "final_answer": []}, "malformed"),
         ({"id": 1609, "question": "Q", "final_answer": "[broken"}, "malformed")],
        [("1606", "2, -2", None), ("1607", "2", None)],
    ),
    "aime24": (
        [{"id": 60, "problem": "Find the remainder.", "solution": "...", "answer": "204", "url": "u"},
         {"ID": "2024-II-4", "Problem": "Find m+n.", "Answer": 33}],
        [({"id": 61, "problem": "Q", "answer": float("nan")}, "bad_answer")],
        [("60", "204", None), ("2024-II-4", "33", None)],
    ),
    "amc23": (
        [{"id": 0, "question": "How many miles?", "answer": 27.0, "url": "u"},
         {"id": 1, "question": "What is the ratio?", "answer": 2.5}],
        [({"id": 2, "answer": 3.0}, "malformed"), ({"id": 0, "question": "Dup", "answer": 1.0}, "duplicate_id")],
        [("0", "27", None), ("1", "2.5", None)],
    ),
    "medmcqa": (
        MEDMCQA_GOOD,
        [({"id": "m3", "question": "Test split row", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": -1},
          "bad_answer"),
         ({"id": "m4", "question": "Missing option", "opa": "a", "opb": "b", "opc": "", "opd": "d", "cop": 1},
          "malformed"),
         ({"id": "m5", "question": "Cop as text", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": None},
          "malformed")],
        [("m1", "A", {"A": "Ethosuximide", "B": "Phenytoin", "C": "Carbamazepine", "D": "Gabapentin"}),
         ("m2", "C", {"A": "A", "B": "B12", "C": "C", "D": "D"})],
    ),
    "medqa": (
        MEDQA_GOOD,
        [({"question": "Q", "options": {"A": "x", "B": "y"}, "answer_idx": "E"}, "bad_answer"),
         ({"question": "Q", "options": {"A": "x", "B": "y"}, "answer": "z"}, "bad_answer"),
         ({"question": "Q", "options": "A. x B. y", "answer_idx": "A"}, "malformed"),
         ({"question": "Q", "options": {"A": "x", "C": "y"}, "answer_idx": "A"}, "malformed")],
        [("0", "A", {"A": "Blood culture", "B": "CT scan", "C": "Discharge", "D": "Biopsy"}),
         ("1", "C", {"A": "Radial nerve", "B": "Median nerve", "C": "Ulnar nerve", "D": "Axillary nerve"}),
         ("hf-1", "B", {"A": "Ovary", "B": "Ampulla", "C": "Isthmus", "D": "Cervix"})],
    ),
    "pubmedqa": (
        PUBMEDQA_GOOD,
        [({"pubid": 333, "question": "Q?", "context": {"contexts": []}, "final_decision": "yes"}, "malformed"),
         ({"pubid": 444, "question": "Q?", "context": {"contexts": ["c"]}, "final_decision": "perhaps"}, "bad_answer")],
        [("111", "A", {"A": "yes", "B": "no", "C": "maybe"}), ("222", "C", {"A": "yes", "B": "no", "C": "maybe"})],
    ),
    "mmlu_medical": (
        MMLU_GOOD,
        [({"question": "Q", "choices": ["a", "b", "c", "d"], "answer": 4}, "bad_answer"),
         ({"question": "Q", "choices": [], "answer": 0}, "malformed")],
        [("0", "B", {"A": "Femur", "B": "Radius", "C": "Tibia", "D": "Humerus"}),
         ("1", "C", {"A": "13", "B": "18", "C": "21", "D": "X"})],
    ),
    "m1_eval": (
        M1_GOOD,
        [({"question": "Q", "options": {"A": "x", "B": "y"}, "answer_idx": "E", "source": "MedQA_USLME_test"},
          "bad_answer"),
         ({"question": "Q", "answer_idx": "A", "source": "NEJM"}, "malformed")],
        [("0", "A", {"A": "Ethosuximide", "B": "Phenytoin", "C": "Carbamazepine", "D": "Gabapentin"}),
         ("1", "C", {"A": "Ovary", "B": "Isthmus", "C": "Ampulla", "D": "Cervix", "E": "Fimbria"}),
         ("2", "B", {"A": "yes", "B": "no", "C": "maybe"})],
    ),
    "figfont": (
        [{"question": "What word does this say?\n\n  _  _\n |_ |_|\n", "answer": "EA", "font": "tiny"},
         {"id": "p2", "question": "What word?\n #  #\n", "answer": " OK "}],
        [({"question": "What word?"}, "malformed"), ({"question": "  ", "answer": "X"}, "malformed")],
        [("0", "EA", None), ("p2", "OK", None)],
    ),
}


def fixture_lines(name):
    """Good rows first, then bad rows: positions of good rows are 0, 1, ..."""
    good, bad, _ = FIXTURES[name]
    return list(good) + [row for row, _ in bad]
