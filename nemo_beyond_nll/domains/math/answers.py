"""Math answers: the final \\boxed{...} of a solution, and equivalence of two answers.

Equivalence is math-verify's (LaTeX and plain expressions to sympy, then numeric, symbolic, set,
interval and matrix comparison), with three additions: a percentage also equals its fraction
(50\\% == 50 == 0.5), answers that are plain words compare as words (math-verify would read "east"
as the product e*a*s*t, equal to "teas"), and every comparison has a time limit.
"""

from __future__ import annotations

import logging
import re
from typing import Optional

from ...utils.time_limit import call_with_time_limit

DEFAULT_TIMEOUT_S = 5.0

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_UNBRACED_BOX_CONTENT = re.compile(r"\s+([^\s$]+)")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*\\?%")
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
_WORDS = re.compile(r"[A-Za-z]{2,}(?:\s+[A-Za-z]+)*")


def extract_answer(text: Optional[str]) -> Optional[str]:
    """The content of the last \\boxed{...} (or \\fbox{...}, or `\\boxed 5`) in `text`.

    Nested and escaped braces are handled. None when there is no box, when the last box is empty,
    or when it is never closed (a cut-off generation has no final answer, even if an earlier box
    holds an intermediate one).
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    boxes = list(_BOX.finditer(text))
    if not boxes:
        return None
    rest = text[boxes[-1].end():]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        content = _braced_content(stripped)
    else:
        match = _UNBRACED_BOX_CONTENT.match(rest)
        content = match.group(1).rstrip(".,;") if match else None
    if content is None or not content.strip():
        return None
    return content.strip()


def _braced_content(text: str) -> Optional[str]:
    """What lies between text[0] == '{' and its matching '}', or None when it is never closed."""
    depth, i = 0, 0
    while i < len(text):
        char = text[i]
        if char == "\\":  # \{ and \} are literal braces, \\ a literal backslash
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[1:i]
        i += 1
    return None


def is_equiv(pred: Optional[str], gold: Optional[str], timeout: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether answer `pred` is mathematically equivalent to answer `gold`.

    Both are answers, not whole solutions (see :func:`extract_answer`): "\\frac{1}{2}", "0.5",
    "x = 3", "(1, 2]", "5\\text{ cm}". A missing or blank answer is never equivalent. A comparison
    that has not finished after `timeout` seconds counts as not equivalent; this holds in any
    thread (see :mod:`nemo_beyond_nll.utils.time_limit`).
    """
    if pred is None or gold is None:
        return False
    if not isinstance(pred, str) or not isinstance(gold, str):
        raise ValueError(f"answers must be strings, got {type(pred).__name__} and {type(gold).__name__}")
    if not pred.strip() or not gold.strip():
        return False
    return bool(call_with_time_limit(f"{__name__}:_equivalent", (pred, gold), timeout, False,
                                     warm_up=f"{__name__}:warm_up"))


def warm_up() -> None:
    """Import math-verify and load its LaTeX grammar (seconds on a busy machine), outside the time limit."""
    from math_verify import parse, verify

    verify(parse("$1$", parsing_timeout=None), parse("$1$", parsing_timeout=None), timeout_seconds=None)


def _equivalent(pred: str, gold: str) -> bool:
    """is_equiv without the time limit."""
    pred_words, gold_words = _as_words(pred), _as_words(gold)
    if pred_words is not None and gold_words is not None:
        return pred_words == gold_words
    from math_verify import verify

    golds, preds = _parsed_forms(gold), _parsed_forms(pred)
    # math-verify is not symmetric: the gold answer goes first.
    return any(verify(g, p, timeout_seconds=None) for g in golds for p in preds)


def _as_words(answer: str) -> Optional[str]:
    """The answer as lower-case words with single spaces, if it is nothing but words."""
    text = _TEXT_COMMAND.sub(r"\1", _UNESCAPED_DOLLAR.sub("", answer)).strip().rstrip(".")
    return " ".join(text.lower().split()) if _WORDS.fullmatch(text) else None


def _parsed_forms(answer: str) -> list:
    """math-verify's readings of the answer, and of its percentages as fractions."""
    from math_verify import parse

    text = _UNESCAPED_DOLLAR.sub("", answer).strip()
    texts = [text]
    if _PERCENT.search(text):
        texts.append(_PERCENT.sub(r"\\frac{\1}{100}", text))
    # `$...$` makes math-verify read the whole answer as one LaTeX expression.
    forms = [parse(f"${t}$", parsing_timeout=None) for t in texts]
    return [form for form in forms if form]


class _DropDisabledTimeoutNotice(logging.Filter):
    """math-verify warns once that its own timeout is off; here the limit is kept by time_limit."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropDisabledTimeoutNotice())
