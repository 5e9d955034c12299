import pytest

from nemo_beyond_nll.domains.medical import extract_choice, option_map, parse_options, stated_choice

DRUGS = ["Aspirin", "Heparin", "Warfarin", "Clopidogrel"]


@pytest.mark.parametrize(
    "text, choice",
    [
        ("The answer is (B).", "B"),
        ("Answer: C", "C"),
        ("answer is: d", "D"),
        ("Let me think.\nHeparin acts fast.\n\nFinal answer: **D. Clopidogrel**", "D"),
        ("The correct option is B because it acts on thrombin.", "B"),
        ("I would choose option A.", "A"),
        (r"Therefore the drug is $\boxed{A}$.", "A"),
        (r"\boxed{\text{(C)}}", "C"),
        (r"\boxed{Warfarin}", "C"),
        ("B", "B"),
        ("  (d)  ", "D"),
        ("Reasoning about anticoagulants...\nB. Heparin", "B"),
        ("Heparin is the drug of choice here.", "B"),
        ("At first the answer seemed to be A.\nOn reflection, the answer is C.", "C"),
        (r"The answer is A. Wait, no: \boxed{B}", "B"),
    ],
)
def test_choice_found(text, choice):
    assert extract_choice(text, DRUGS) == choice


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "I am not sure.",
        "The answer is B or C.",
        "Answer: (A), (D)",
        r"\boxed{B, C}",
        "Aspirin and heparin both work.",
        "The answer is E.",  # not one of the four options
        "A patient with atrial fibrillation needs anticoagulation.",
        "b. none of these",  # lower case with text reads as a list item, not a decision
    ],
)
def test_no_choice_or_ambiguous(text):
    assert extract_choice(text, DRUGS) is None


def test_mapping_options_and_longest_option_text():
    options = {"a": "Aspirin", "b": "Aspirin and heparin"}
    assert extract_choice("The best choice is aspirin and heparin together.", options) == "B"
    assert extract_choice("Give aspirin alone.", options) == "A"
    assert extract_choice("Answer: b", options) == "B"


def test_stated_choice_ignores_options_named_in_passing():
    reasoning = "Heparin is given intravenously, so it does not fit long-term use."
    assert extract_choice(reasoning, DRUGS) == "B"
    assert stated_choice(reasoning, DRUGS) is None
    assert stated_choice(reasoning + "\nAnswer: C", DRUGS) == "C"
    assert stated_choice(reasoning + "\nThe answer is A or C.", DRUGS) is None


def test_option_map():
    assert option_map(["x", "y"]) == {"A": "x", "B": "y"}
    assert option_map({"c": " z "}) == {"C": "z"}


@pytest.mark.parametrize(
    "options, message",
    [({}, "must not be empty"), ([], "must not be empty"), ({"AB": "x"}, "single letters"),
     ("ABCD", "list of texts or a mapping"), (5, "list of texts or a mapping"), (["x"] * 27, "at most 26")],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        extract_choice("A", options)


def test_bad_text():
    with pytest.raises(ValueError, match="must be a string"):
        extract_choice(3, DRUGS)


def test_parse_options():
    prompt = (
        "A 65-year-old man has atrial fibrillation.\nWhich drug?\n"
        "A. Aspirin\nB) Heparin\n(C) Warfarin\n**D.** Clopidogrel\n"
    )
    assert parse_options(prompt) == dict(zip("ABCD", DRUGS))
    assert parse_options("A. only one option\nthen text") == {}
    assert parse_options("no options at all") == {}
    # A lettered list inside the question is not the answer options: the last run is.
    two_lists = "Findings:\nA. fever\nB. rash\nOptions:\nA. Measles\nB. Rubella\nC. Mumps"
    assert parse_options(two_lists) == {"A": "Measles", "B": "Rubella", "C": "Mumps"}
