"""Math answers: the final answer of a solution, and equivalence of two answers.

:func:`extract_answer` is the last \\boxed{...}; :func:`final_answer` reads a solution as a grader
would: the last box (or, for an answer of several parts, the last boxes together), else the last
statement such as "The final answer is 5" / "Final Answer: 5" / "**Answer:** 5" (or a JSON
{"answer": ...}), else a last line that is nothing but an expression; after the reasoning, when an
output marks where it ends (`</think>`).

Equivalence is math-verify's (LaTeX and plain expressions to sympy, then numeric, symbolic, set,
interval and matrix comparison), with these additions: a percentage also equals its fraction
(50\\% == 50 == 0.5); a repeating decimal (0.\\overline{3}, 0.(3), 0.333...) is its fraction; an
inequality in one variable (x > 3, -1 < x \\le 2, x < 1 or x > 2) is its interval (union); a number
followed by plain words (10 dollars) is the number; words in \\text{} and a leading label are
dropped ("\\text{Total: } 42", an AMC "\\textbf{(C)}\\ 12"); a number in words is its numeral;
thousands separated by spacing commands (1\\,000, 1~000) and e-notation (1.3e-7) are numbers;
answers that are plain words compare as words (math-verify would read "east" as the product
e*a*s*t, equal to "teas"); and every comparison has a time limit.
"""

from __future__ import annotations

import json
import logging
import re
from typing import List, Optional, Tuple

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
    return boxes[-1][0] if boxes else None


def _checked(text: Optional[str]) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    return text


def _boxes(text: str) -> List[Tuple[Optional[str], int]]:
    """Every box in `text`, in order: its stripped content (None for an empty or unclosed one) and
    where its content starts."""
    found = []
    for box in _BOX.finditer(text):
        rest = text[box.end():]
        stripped = rest.lstrip()
        if stripped.startswith("{"):
            content = _braced_content(stripped)
        else:
            match = _UNBRACED_BOX_CONTENT.match(rest)
            content = match.group(1).rstrip(".,;") if match else None
        found.append((content.strip() if content is not None and content.strip() else None, box.end()))
    return found


def final_answer(text: Optional[str], parts: int = 1) -> Optional[str]:
    """The final answer of solution `text`, read as a grader would; None when it gives none.

    Only the part after the reasoning counts when the output marks one (see :func:`answer_part`).

    1. Boxes: the last box, as :func:`extract_answer` (a last box cut off or empty means no answer).
       When the answer has `parts` > 1 parts (see :func:`answer_parts`) and the last box holds only
       one, the last `parts` boxes are the answer, joined as "a, b": a solution that boxes x and y
       separately answers the pair. An interval's two ends are not parts. An answer statement
       after the last box that corrects it ("Wait, ... the answer is actually 5") wins.
    2. Otherwise a JSON object's answer (see :func:`json_answer`).
    3. Otherwise the last statement of the answer: "final answer is", "the answer is", "Answer:"
       (also in bold, "**Final Answer:** ...", and in Spanish, French, German, Italian,
       Portuguese, Russian and Chinese), taking the first formula after it ($...$, \\(...\\),
       \\[...\\]) or else the rest of its sentence; a statement ending its line takes the next line.
    4. Otherwise the last line, if it is nothing but a formula ("$\\frac{1}{2}$", "\\[ x = 5 \\]").
    5. Otherwise a concluding last sentence ("Therefore, ...", "Thus ...", "So ...", "Hence ...")
       with exactly one formula in it, or else exactly one number: "Thus, she earns $18$ dollars."
    """
    text = answer_part(_checked(text))
    boxes = _boxes(text)
    if boxes:
        last, start = boxes[-1]
        after = text[start:]
        if _CORRECTION.search(after):
            corrected = _from_statement(after)
            if corrected is not None:
                return corrected
        if last is None:
            return None
        contents = [content for content, _ in boxes[-parts:]]
        if parts > 1 and answer_parts(last) == 1 and len(boxes) >= parts and None not in contents:
            return ", ".join(contents)
        return last
    return json_answer(text) or _from_statement(text) or _from_last_line(text) or _from_conclusion(text)


# Words that take back an answer already given: a statement after them replaces the last box.
_CORRECTION = re.compile(r"\b(?:wait|actually|correction|mistake|oops|instead)\b", re.IGNORECASE)
# The end of a reasoning section: the answer is what follows it ("<think>...</think> answer").
_REASONING_END = re.compile(r"</think>|^#+\s*final\s+response\s*$", re.IGNORECASE | re.MULTILINE)


def answer_part(text: str) -> str:
    """The part of `text` after its reasoning (after the last `</think>` or a "## Final Response"
    heading) when there is one and it is not blank; else all of `text`. A draft answer inside
    the reasoning is not the answer."""
    ends = list(_REASONING_END.finditer(text))
    rest = text[ends[-1].end():] if ends else ""
    return rest if rest.strip() else text


_JSON_START = re.compile(r"\{\s*\"")
_JSON_KEY = re.compile(r"(?:final_|correct_)?(?:answer|choice|option)", re.IGNORECASE)


def json_answer(text: str) -> Optional[str]:
    """The answer field of the last JSON object in `text` ({"answer": "B"}, {"final_answer": 7}),
    as text; None when there is none. JSON escapes are undone ("\\\\frac" is "\\frac")."""
    decoder = json.JSONDecoder()
    for start in reversed([m.start() for m in _JSON_START.finditer(text)]):
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            for key, field in value.items():
                if _JSON_KEY.fullmatch(str(key)) and isinstance(field, (str, int, float)) and str(field).strip():
                    return str(field).strip()
    return None


_ANSWER_WORDS = r"final\s+answer|the\s+answer|answer|respuesta|r[ée]ponse|antwort|risposta|resposta|ответ"
_STATEMENT = re.compile(
    rf"(?:\b(?:{_ANSWER_WORDS})(?:\s+(?:final|finale|to\s+(?:the|this)\s+(?:question|problem)))?|(?:最终)?答案)"
    r"\s*(?:\*\*\s*)?(?:(?:is|would\s+be|es|est|ist|lautet)(?![A-Za-z])|è|é|是|为|為|=|:|：)\s*(?:\*\*)?(?:\s*:)?"
    r"(?:\s*(?:actually|really|indeed)\b)?",  # "the answer is actually 5"
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


# A thousands separator: a comma, "{,}", ",\!", or a spacing command or space ("1\,000", "1~000").
_THOUSANDS = re.compile(r"(?<=\d)(?:,\\!|,|\{,\}|\\[,;:! ]|~|[\u00a0\u2009\u202f])(?=\d{3}(?!\d))")


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
    """The answer (less a closing full stop and a modulus; thousands separators as commas; e-notation
    as a power of ten), then the forms it may also be read as: the same without \\text{} and a
    leading label, and of each, a number in words as its numeral, percentages and repeating
    decimals as fractions, an inequality as its interval, a number without the words after it."""
    text = re.sub(r"(?<!\.)\.$", "", text.strip()).strip() or text  # a closing full stop
    text = _MODULUS.sub("", text).strip() or text  # "2 \\pmod 7" is the residue 2
    # math-verify reads "1,000" as a thousand but "1\,000" as 1 * 0, and "1.3e-7" as 1.3 * e - 7
    text = _THOUSANDS.sub(",", text)
    text = _E_NOTATION.sub(r"\1 \\times 10^{\2}", text)
    texts = []
    for base in dict.fromkeys([text, _without_labels(text)]):
        forms = [base]
        numeral = _numeral(base)
        if numeral:
            forms.append(numeral)
        decimals = _repeating_as_fractions(base)
        if decimals != base:
            forms.append(decimals)
        forms += [_PERCENT.sub(r"\\frac{\1}{100}", form) for form in list(forms) if _PERCENT.search(form)]
        interval = _inequality_as_interval(base)
        if interval:
            forms.append(interval)
        worded = _TRAILING_WORDS.fullmatch(base)
        if worded:
            forms.append(worded.group(1))
        texts += forms
    return list(dict.fromkeys(texts))


_E_NOTATION = re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?)[eE]([-+]?\d+)(?![\w.])")
_SPACING = re.compile(r"\\[,;:! ]|\\q?quad(?![A-Za-z])|~")
# A label before the value: "The answer is x^2+1", "Total: 42", an AMC choice "(C) 12".
_LABEL = re.compile(r"^(?:\([A-Z]\)|[A-Za-z][A-Za-z ]*?(?:\s+is|:))\s+(?=\S)")


def _without_labels(text: str) -> str:
    """The answer with the words in \\text{} (and \\textbf{}, \\mbox{}, ...) as plain words, spacing
    commands as spaces, and a leading label dropped: "\\text{36 students}" is "36 students",
    "\\textbf{(C)}\\ 12" is "12", "\\text{The answer is } x^2+1" is "x^2+1"."""
    plain = " ".join(_SPACING.sub(" ", _TEXT_COMMAND.sub(r" \1 ", text)).split())
    return _LABEL.sub("", plain)


_UNITS = {word: n for n, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {word: 10 * n for n, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_SCALES = {"thousand": 1000, "million": 10**6, "billion": 10**9}


def _numeral(text: str) -> Optional[str]:
    """A whole number written in English words ("five", "twenty-four", "one hundred and twenty")
    as its numeral; None for anything else."""
    words = re.split(r"[\s-]+", text.strip().lower())
    known = all(w in _UNITS or w in _TENS or w in _SCALES or w in ("hundred", "and") for w in words)
    if not known or set(words) == {"and"}:
        return None
    total, current = 0, 0
    for word in words:
        if word in _UNITS or word in _TENS:
            current += _UNITS.get(word, 0) + _TENS.get(word, 0)
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in _SCALES:
            total, current = total + (current or 1) * _SCALES[word], 0
    return str(total + current)


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
