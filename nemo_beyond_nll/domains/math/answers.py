"""Math answers: the final answer of a solution, and equivalence of two answers.

:func:`extract_answer` is the last \\boxed{...}; :func:`final_answer` reads a solution as a grader
would: the last box (or, for an answer of several parts, the last boxes together), else the last
statement such as "The final answer is 5" / "Final Answer: 5" / "**Answer:** 5", else a last line
that is nothing but an expression.

Equivalence is math-verify's (LaTeX and plain expressions to sympy, then numeric, symbolic, set,
interval and matrix comparison), with these additions: a percentage also equals its fraction
(50\\% == 50 == 0.5); a repeating decimal (0.\\overline{3}, 0.(3), 0.333...) is its fraction; an
inequality in one variable (x > 3, -1 < x \\le 2, x < 1 or x > 2) is its interval (union); a number
followed by plain words (10 dollars) is the number; answers that are plain words compare as words
(math-verify would read "east" as the product e*a*s*t, equal to "teas"); and every comparison has
a time limit.
"""

from __future__ import annotations

import logging
import re
from typing import List, Optional

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
    boxes = _boxes(_checked(text))
    return boxes[-1] if boxes else None


def _checked(text: Optional[str]) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    return text


def _boxes(text: str) -> List[Optional[str]]:
    """The stripped content of every box in `text`, in order; None for an empty or unclosed one."""
    found = []
    for box in _BOX.finditer(text):
        rest = text[box.end():]
        stripped = rest.lstrip()
        if stripped.startswith("{"):
            content = _braced_content(stripped)
        else:
            match = _UNBRACED_BOX_CONTENT.match(rest)
            content = match.group(1).rstrip(".,;") if match else None
        found.append(content.strip() if content is not None and content.strip() else None)
    return found


def final_answer(text: Optional[str], parts: int = 1) -> Optional[str]:
    """The final answer of solution `text`, read as a grader would; None when it gives none.

    1. Boxes: the last box, as :func:`extract_answer` (a last box cut off or empty means no answer).
       When the answer has `parts` > 1 parts (see :func:`answer_parts`) and the last box holds only
       one, the last `parts` boxes are the answer, joined as "a, b": a solution that boxes x and y
       separately answers the pair. An interval's two ends are not parts.
    2. Otherwise the last statement of the answer: "final answer is", "the answer is", "Answer:"
       (also in bold, "**Final Answer:** ..."), taking the first formula after it ($...$, \\(...\\),
       \\[...\\]) or else the rest of its sentence; a statement ending its line takes the next line.
    3. Otherwise the last line, if it is nothing but a formula ("$\\frac{1}{2}$", "\\[ x = 5 \\]").
    4. Otherwise a concluding last sentence ("Therefore, ...", "Thus ...", "So ...", "Hence ...")
       with exactly one formula in it, or else exactly one number: "Thus, she earns $18$ dollars."
    """
    text = _checked(text)
    boxes = _boxes(text)
    if boxes:
        last = boxes[-1]
        if last is None:
            return None
        if parts > 1 and answer_parts(last) == 1 and len(boxes) >= parts and None not in boxes[-parts:]:
            return ", ".join(boxes[-parts:])
        return last
    return _from_statement(text) or _from_last_line(text) or _from_conclusion(text)


_STATEMENT = re.compile(
    r"\b(?:final\s+answer|the\s+answer|answer)(?:\s+to\s+(?:the|this)\s+(?:question|problem))?"
    r"\s*(?:\*\*\s*)?(?:is|would\s+be|=|:)\s*(?:\*\*)?(?:\s*:)?",
    re.IGNORECASE,
)
_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_SENTENCE_END = re.compile(r"\.(?:\s|$)|;|\bI hope\b")


def _from_statement(text: str) -> Optional[str]:
    for match in reversed(list(_STATEMENT.finditer(text))):
        tail = text[match.end():]
        line, _, after = tail.partition("\n")
        if not _strip_decoration(line):  # "Final Answer:" then the answer on the next line(s)
            tail = after.lstrip()
        span = _MATH_SPAN.match(tail.lstrip(" *"))
        if span:
            answer = next(group for group in span.groups() if group is not None)
        else:
            line = tail.split("\n", 1)[0]
            end = _SENTENCE_END.search(line)
            answer = line[: end.start()] if end else line
        answer = _strip_decoration(answer)
        if answer:
            return answer
    return None


def _strip_decoration(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    answer = re.sub(r"^\\\[|\\\]$|^\\\(|\\\)$|^\$+|\$+$", "", answer).strip()
    answer = answer.rstrip(",;:").strip()
    return re.sub(r"(?<!\.)\.$", "", answer).strip()  # a full stop, not an ellipsis


# A line that is a formula: no word of three letters or more outside commands and \text{}.
_COMMANDS = re.compile(r"\\text\w*\s*\{[^{}]*\}|\\[A-Za-z]+")


def _from_last_line(text: str) -> Optional[str]:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    line = lines[-1]
    if line in (r"\]", "$$") and len(lines) >= 2:  # a display formula on its own lines
        start = max(i for i, l in enumerate(lines[:-1]) if l in (r"\[", "$$")) if any(
            l in (r"\[", "$$") for l in lines[:-1]) else None
        if start is None:
            return None
        line = " ".join(lines[start + 1:-1])
    line = _strip_decoration(line)
    if not line or re.search(r"[A-Za-z]{3,}", _COMMANDS.sub("", line)) or not re.search(r"[\dA-Za-z\\]", line):
        return None
    if "$" in line or "\\(" in line:  # prose around an inline formula
        return None
    return line


_CONCLUSION = re.compile(r"(?:therefore|thus|so|hence|in\s+conclusion|in\s+total|altogether)\b", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def _from_conclusion(text: str) -> Optional[str]:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    sentences = [s for s in re.split(r"(?<=[.!])\s+", lines[-1]) if s.strip()]
    if not sentences or not _CONCLUSION.match(sentences[-1].lstrip("*# ")):
        return None
    sentence = sentences[-1]
    spans = [next(g for g in m.groups() if g is not None) for m in _MATH_SPAN.finditer(sentence)]
    if spans:
        return _strip_decoration(spans[0]) if len(spans) == 1 else None
    numbers = _NUMBER.findall(sentence)
    return numbers[0] if len(numbers) == 1 else None


def answer_parts(answer: str) -> int:
    """How many comma-separated parts `answer` has at the top level, brackets of a tuple or set
    aside ("(2, 3)", "\\{1, 2\\}", "x=1, y=2" have 2); an interval, or a number with thousands
    separators ("1,000"), has 1."""
    text = _UNESCAPED_DOLLAR.sub("", answer).strip()
    text = re.sub(r"\\left|\\right", "", text)
    if "\\infty" in text or re.fullmatch(r"[(\[].*[)\]]", text, re.DOTALL) and text[0] + text[-1] in ("(]", "[)"):
        return 1
    text = re.sub(r"^\\\{(.*)\\\}$|^\((.*)\)$|^\[(.*)\]$", lambda m: next(g for g in m.groups() if g is not None), text)
    text = _THOUSANDS.sub("", text)
    depth, count = 0, 1
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            count += 1
    return count


_THOUSANDS = re.compile(r"(?<=\d)(?:,|\{,\})(?=\d{3}(?!\d))")


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
    """math-verify's readings of the answer and of its rewritten forms (see :func:`_rewritten`)."""
    from math_verify import parse

    text = _UNESCAPED_DOLLAR.sub("", answer).strip()
    # `$...$` makes math-verify read the whole answer as one LaTeX expression.
    forms = [parse(f"${t}$", parsing_timeout=None) for t in _rewritten(text)]
    return [form for form in forms if form]


def _rewritten(text: str) -> List[str]:
    """The answer (less a closing full stop and a modulus), then the forms it may also be read as:
    percentages as fractions, repeating decimals as fractions, an inequality as its interval, a
    number without the words after it."""
    text = re.sub(r"(?<!\.)\.$", "", text.strip()).strip() or text  # a closing full stop
    text = _MODULUS.sub("", text).strip() or text  # "2 \\pmod 7" is the residue 2
    texts = [text]
    decimals = _repeating_as_fractions(text)
    if decimals != text:
        texts.append(decimals)
    for candidate in list(texts):
        if _PERCENT.search(candidate):
            texts.append(_PERCENT.sub(r"\\frac{\1}{100}", candidate))
    interval = _inequality_as_interval(text)
    if interval:
        texts.append(interval)
    worded = _TRAILING_WORDS.fullmatch(text)
    if worded:
        texts.append(worded.group(1))
    return texts


_MODULUS = re.compile(r"\s*(?:\\pmod\s*\{?\s*\w+\s*\}?|\(\s*\\?(?:bmod|mod)\s*\{?\s*\w+\s*\}?\s*\))\s*$")
_OVERLINE = re.compile(r"(-?)(\d*)\.(\d*)\\(?:overline|dot)\s*(?:\{(\d+)\}|(\d))")
_PARENTHESISED = re.compile(r"(-?)(\d*)\.(\d*)\((\d+)\)")
_ELLIPSIS = re.compile(r"(-?)(\d*)\.(\d+)\s*(?:\.\.\.|\\ldots|\\dots|\\cdots|…)")
_TRAILING_WORDS = re.compile(r"(-?[\d.,]*\d(?:\\%|%)?)\s+[A-Za-z][A-Za-z .]*")


def _repeating_as_fractions(text: str) -> str:
    """`0.\\overline{3}`, `0.1\\overline{6}`, `0.(3)`, `0.333...` as \\frac{}{} of the number they repeat."""

    def fraction(sign: str, whole: str, fixed: str, period: str) -> str:
        from fractions import Fraction

        value = Fraction(int(whole or 0)) + Fraction(int(fixed or 0), 10 ** len(fixed))
        value += Fraction(int(period), (10 ** len(period) - 1) * 10 ** len(fixed))
        value = -value if sign else value
        return f"\\frac{{{value.numerator}}}{{{value.denominator}}}"

    def overline(m):
        return fraction(m.group(1), m.group(2), m.group(3), m.group(4) or m.group(5))

    def ellipsis(m):
        digits = m.group(3)
        for size in range(1, len(digits) // 2 + 1):  # the shortest block seen at least twice at the end
            block = digits[-size:]
            if digits.endswith(block * 2):
                fixed = digits[:-size]
                while fixed.endswith(block):
                    fixed = fixed[:-size]
                return fraction(m.group(1), m.group(2), fixed, block)
        return m.group(0)

    text = _OVERLINE.sub(overline, text)
    text = _PARENTHESISED.sub(overline, text)
    return _ELLIPSIS.sub(ellipsis, text)


_RELATION = re.compile(
    r"\\(?:leqslant|geqslant|leq|geq|le|ge|lt|gt)(?![A-Za-z])|<=|>=|≤|≥|<|>"
)
_UNION = re.compile(r"\\text\s*\{\s*(?:or)\s*\}|\\(?:cup|lor|vee)(?![A-Za-z])|\bor\b|,")
_LESS = {"<", r"\lt"}
_LESS_EQUAL = {"<=", "≤", r"\le", r"\leq", r"\leqslant"}
_GREATER = {">", r"\gt"}
_GREATER_EQUAL = {">=", "≥", r"\ge", r"\geq", r"\geqslant"}


def _inequality_as_interval(text: str) -> Optional[str]:
    """`x > 3` as `(3, \\infty)`, `-1 < x \\le 2` as `(-1, 2]`, `x < 1 or x > 2` as a union; None
    unless every piece is an inequality in the same one variable."""
    if not _RELATION.search(text):
        return None
    intervals, variable = [], None
    for piece in _UNION.split(text):
        tokens = [t.strip() for t in _RELATION.split(piece)]
        relations = [r.group(0) for r in _RELATION.finditer(piece)]
        if any(not t for t in tokens):
            return None
        names = [i for i, t in enumerate(tokens) if re.fullmatch(r"[A-Za-z]", t)]
        if len(names) != 1 or (variable is not None and tokens[names[0]] != variable):
            return None
        variable, at = tokens[names[0]], names[0]
        bounds = {"low": ("(", r"-\infty"), "high": (r"\infty", ")")}
        for side, other in ((-1, at - 1), (1, at + 1)):
            if not 0 <= other < len(tokens):
                continue
            relation = relations[min(at, other)]
            # the bound is on the variable's left (`a < x`) or right (`x < a`)
            less = relation in _LESS | _LESS_EQUAL
            strict = relation in _LESS | _GREATER
            if not less and relation not in _GREATER | _GREATER_EQUAL:
                return None
            is_lower = (side == -1) == less
            if is_lower:
                bounds["low"] = ("(" if strict else "[", tokens[other])
            else:
                bounds["high"] = (tokens[other], ")" if strict else "]")
        intervals.append(f"{bounds['low'][0]}{bounds['low'][1]}, {bounds['high'][0]}{bounds['high'][1]}")
    return r" \cup ".join(intervals) if intervals else None


class _DropDisabledTimeoutNotice(logging.Filter):
    """math-verify warns once that its own timeout is off; here the limit is kept by time_limit."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropDisabledTimeoutNotice())
