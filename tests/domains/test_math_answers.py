import threading
import time

import pytest

from nemo_beyond_nll.domains.math import extract_answer, is_equiv


@pytest.mark.parametrize(
    "text, answer",
    [
        (r"So the answer is $\boxed{5}$.", "5"),
        (r"First \boxed{1}, then finally \boxed{2}", "2"),
        (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{\left\{ x \mid x > 0 \right\}}", r"\left\{ x \mid x > 0 \right\}"),
        (r"\boxed {  7 }", "7"),
        (r"the answer is $\boxed 5$.", "5"),
        (r"\fbox{42}", "42"),
        (r"\boxed{\text{(B)}}", r"\text{(B)}"),
        ("\\boxed{a\nb}", "a\nb"),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "The answer is 5.",
        r"\boxed{}",
        r"\boxed{  }",
        r"\boxed{1} and then \boxed{\frac{2}{3}",  # the last box is cut off: no final answer
        r"\boxedsomething{3}",
    ],
)
def test_extract_answer_absent(text):
    assert extract_answer(text) is None


def test_extract_answer_rejects_non_text():
    with pytest.raises(ValueError, match="must be a string"):
        extract_answer(5)


EQUIVALENT = [
    (r"\frac{1}{2}", "0.5"),
    (r"\dfrac{1}{2}", "1/2"),
    (r"\tfrac{3}{4}", "0.75"),
    (r"\frac12", r"\frac{1}{2}"),
    (r"-\frac{1}{2}", r"\frac{-1}{2}"),
    (r"1\frac{1}{2}", r"\frac{3}{2}"),
    (r"\frac{1}{3}", "0.3333333"),
    ("2.0", "2"),
    ("1,000", "1000"),
    (r"50\%", "0.5"),
    ("0.5", r"50\%"),
    (r"50\%", "50"),
    (r"\sqrt{8}", r"2\sqrt{2}"),
    (r"\frac{\sqrt{3}}{2}", r"\dfrac{\sqrt3}{2}"),
    (r"2\pi", "6.28318530718"),
    ("x = 3", "3"),
    ("y = 2x + 1", "2x+1"),
    ("1+2x", "2x+1"),
    ("(x-1)(x+1)", "x^2-1"),
    ("(1, 2]", "(1,2]"),
    (r"\left[0, 1\right)", "[0,1)"),
    (r"(-\infty, 2]", r"(-\infty,2]"),
    ("(1, 2, 3)", "(1,2,3)"),
    (r"\{3, 2, 1\}", r"\{1,2,3\}"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
    (r"5\text{ cm}", "5"),
    (r"12 \text{ inches}", "12"),
    (r"\$10", "10"),
    (r"90^\circ", "90"),
    (r"$\frac{1}{2}$", "0.5"),
    ("tuesday", r"\text{Tuesday}"),
    (r"\text{no solution}", "No  solution."),
]

NOT_EQUIVALENT = [
    ("[0,1)", "[0,1]"),
    ("(1,2)", "[1,2]"),
    ("(1,3,2)", "(1,2,3)"),
    ("0.333", r"\frac{1}{3}"),
    ("3.14", r"\pi"),
    ("2.0001", "2"),
    ("-3", "3"),
    ("x+2", "x+1"),
    (r"\frac{1}{3}", r"\frac{1}{2}"),
    (r"\frac{\pi}{2}", r"90^\circ"),
    ("5", r"50\%"),
    ("teas", "east"),  # as products of symbols e*a*s*t these would be equal
    ("Monday", "Tuesday"),
    ("x", "y"),
]

NON_ANSWERS = [
    (None, "1"),
    ("", "1"),
    ("   ", "1"),
    ("1", None),
    ("I do not know", "5"),
    ("The answer is unclear", r"\frac{1}{2}"),
]


@pytest.mark.parametrize("pred, gold", EQUIVALENT)
def test_equivalent(pred, gold):
    assert is_equiv(pred, gold)


@pytest.mark.parametrize("pred, gold", NOT_EQUIVALENT)
def test_not_equivalent(pred, gold):
    assert not is_equiv(pred, gold)


@pytest.mark.parametrize("pred, gold", NON_ANSWERS)
def test_non_answers_are_never_equivalent(pred, gold):
    assert is_equiv(pred, gold) is False


def test_extracted_answer_is_graded():
    solution = r"Adding, $x = \frac{4}{8}$, so the answer is $\boxed{\dfrac{1}{2}}$."
    assert is_equiv(extract_answer(solution), "0.5")
    assert not is_equiv(extract_answer(solution), "0.25")


def test_rejects_non_text():
    with pytest.raises(ValueError, match="answers must be strings"):
        is_equiv(0.5, "0.5")


# 10^(10^10) has ten billion digits: sympy would work on it for a very long time.
HUGE = "10^{10^{10}}"


def test_slow_comparison_is_cut_off_in_main_thread():
    start = time.perf_counter()
    assert is_equiv(HUGE, "1", timeout=0.5) is False
    assert time.perf_counter() - start < 5


def test_slow_comparison_is_cut_off_in_other_threads():
    results = {}

    def grade(key, pred, gold, timeout):
        start = time.perf_counter()
        results[key] = is_equiv(pred, gold, timeout=timeout), time.perf_counter() - start

    threads = [
        threading.Thread(target=grade, args=("fast", r"\frac{1}{2}", "0.5", 30)),
        threading.Thread(target=grade, args=("slow", HUGE, "1", 0.5)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert results["fast"][0] is True
    slow, seconds = results["slow"]
    assert slow is False and seconds < 60  # a child start-up, then half a second
