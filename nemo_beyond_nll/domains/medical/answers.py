"""Multiple-choice answers: which option a model chose.

:func:`extract_choice` reads the part after the reasoning when the output marks one (`</think>`,
"## Final Response") and looks, in this order, for a final \\boxed{} choice, a JSON answer
({"answer": "B"}), the last statement of a choice, a verdict on each option with exactly one
marked correct ("A. ... - incorrect" / "B. ... - correct"), a last line that is only a choice
("B", "(B)", "**B**", "B. Aspirin"; not a listing of the options), and finally the text of
exactly one option anywhere in the output. Statements are "The answer is (B)", "Answer: B",
"Answer - B", "the correct option is B", "I'd go with B", "B is correct", "it is B" and "So, B." at
a line's end, and the same in Spanish, French, German, Italian, Portuguese, Russian and Chinese
("La respuesta es B", "La réponse est B", "Die Antwort ist B", "Ответ: B", "答案是 B"); a negated
option before the chosen one is passed over ("not A; it is D", "not A but D"); "the answer is
actually D" corrects an earlier one. The first place that names a choice decides; if it names
several ("B or D", "B and D", two options marked correct), the answer is ambiguous and counts as
none.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Dict, Mapping, Optional, Sequence, Union

from ..math.answers import answer_part, extract_answer, json_answer

Options = Union[Mapping[str, str], Sequence[str]]

_AMBIGUOUS = object()
_ANSWER_WORD = (
    r"answer|option|choice|respuesta|opci[oó]n|antwort|r[ée]ponse|risposta|resposta|ответ"
)
_STATEMENT = re.compile(
    rf"(?:\b(?:{_ANSWER_WORD})(?:\s+(?:correct[ae]|corretta|correta|finale?))?\s*(?:ist|est|is|es|would\s+be|should\s+be|è|é|[:=：]|[-–—](?=\s*[(\[]?[A-Z]\b))"
    r"|(?:答案|选项|選項|选择|選擇)\s*(?:应该?是|是|为|為|[:：])?|[选選](?=\s*[A-Z])"
    r"|\b(?:choose|select|pick|go(?:ing)?\s+with|opt\s+for)\b"
    r"|\b(?:it\s+is|it's|it\s+must\s+be)(?=\s+[(\[]?[A-Z][)\]]?(?:[.;,!]|\s*$))"
    r"|\b(?:so|thus|hence|therefore)\s*,?(?=\s*(?:option\s+)?[(\[]?[A-Z][)\]]?[.!]?\s*$))"
    r"\s*:?\s*(?:(?:either|option|choice|opci[oó]n|la|el|le|die|der|actually|really|still)\b\s*)*",
    re.IGNORECASE | re.MULTILINE,
)
# "D is correct", "(D) is the best answer": a letter stated right, read at its own position.
_LETTER_IS_RIGHT = re.compile(
    r"(?<![A-Za-z])(?:option\s+|choice\s+)?([(\[]?[A-Z][)\]]?)\s+is\s+(?:the\s+)?(?:correct|right|best|most\s+likely)\b"
    r"(?!\s+(?:than|because\s+it\s+is\s+not))",
)
# "not A; it is D", "not A but D": the negated option before the chosen one is passed over.
_NEGATED = re.compile(r"^\s*not\s+(?:option\s+)?[(\[]?[A-Z][)\]]?\s*[,;]?\s*(?:but\s+|it\s+is\s+|it's\s+)?", re.IGNORECASE)
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_DECORATION = re.compile(r"[*_`$#>]+")
# A letter that starts a span: "B", "(B)", "[B]", "B.", "B)", "B:" (then anything but a letter).
_LEADING_LETTER = re.compile(r"[(\[]?([A-Z])(?:[)\].:,]|(?![A-Za-z]))")
_ANOTHER_LETTER = re.compile(r"[)\].:]?\s*(?:,|/|&|\bor\b|\band\b)\s*[(\[]?([A-Z])(?![A-Za-z])")
# A whole line that is a choice: "B", "(b)", "B.", "B) Aspirin", "B. Aspirin".
_CHOICE_LINE = re.compile(r"[(\[]?([A-Za-z])[)\].:]?(?:\s+\S.*)?")
_OPTION_LINE = re.compile(r"^\s*(?:\*\*)?[(\[]?([A-Z])(?:[)\].:])(?:\*\*)?\s+(\S.*?)\s*$")


def option_map(options: Options) -> Dict[str, str]:
    """Options as {letter: text}: a mapping keeps its letters, a list gets A, B, C, ..."""
    if isinstance(options, Mapping):
        mapped = {}
        for key, text in options.items():
            if not (isinstance(key, str) and len(key.strip()) == 1 and key.strip().isalpha()):
                raise ValueError(f"option keys must be single letters, got {key!r}")
            mapped[key.strip().upper()] = str(text).strip()
    elif isinstance(options, Sequence) and not isinstance(options, str):
        if len(options) > len(string.ascii_uppercase):
            raise ValueError(f"at most 26 options, got {len(options)}")
        mapped = {letter: str(text).strip() for letter, text in zip(string.ascii_uppercase, options)}
    else:
        raise ValueError(f"options must be a list of texts or a mapping of letters to texts, got {options!r}")
    if not mapped:
        raise ValueError("options must not be empty")
    return mapped


def parse_options(prompt: str) -> Dict[str, str]:
    """The lettered options listed one per line in a question ("A. ...", "B) ...", "(C) ..."), or {}.

    Takes the last run of lines lettered A, B, C, ... in order, of at least two options.
    """
    runs, run = [], {}
    for line in prompt.splitlines():
        match = _OPTION_LINE.match(line)
        letter = match.group(1) if match else None
        if letter is not None and letter == string.ascii_uppercase[len(run) % 26]:
            run[letter] = match.group(2)
            continue
        if run:
            runs.append(run)
        run = {"A": match.group(2)} if letter == "A" else {}
    if run:
        runs.append(run)
    runs = [r for r in runs if len(r) >= 2]
    return runs[-1] if runs else {}


def extract_choice(text: Optional[str], options: Options) -> Optional[str]:
    """The option letter chosen in `text`, or None when it names none or several."""
    return _first_choice(text, options, _STATED + (_from_option_text,))


def stated_choice(text: Optional[str], options: Options) -> Optional[str]:
    """Like :func:`extract_choice`, but only a choice stated as such (a box, a JSON answer, an
    answer statement, verdicts on the options, a last line that is a choice) counts, not an
    option's text merely named in passing."""
    return _first_choice(text, options, _STATED)


def _first_choice(text, options, finders) -> Optional[str]:
    opts = option_map(options)
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    text = answer_part(text)
    for find in finders:
        found = find(text, opts)
        if found is _AMBIGUOUS:
            return None
        if found is not None:
            return found
    return None


def _clean(span: str) -> str:
    span = unicodedata.normalize("NFKC", span)  # full-width "Ｂ" and "：" as "B" and ":"
    return _DECORATION.sub("", _TEXT_COMMAND.sub(r"\1", span)).strip()


def _resolve(span: str, opts: Dict[str, str]):
    """The choice a short span names: a letter at its start, else the text of one option."""
    span = _clean(span)
    match = _LEADING_LETTER.match(span)
    if match and match.group(1) in opts:
        other = _ANOTHER_LETTER.match(span, match.end(1))
        if other and other.group(1) in opts and other.group(1) != match.group(1):
            return _AMBIGUOUS
        return match.group(1)
    lone = span.strip("().[]: ")
    if len(lone) == 1 and lone.upper() in opts:  # a lone lower-case letter: "b", "(b)"
        return lone.upper()
    return _one_option_named(span, opts)


def _one_option_named(text: str, opts: Dict[str, str]):
    """The letter of the one option whose text occurs in `text`; an option inside a longer named one
    does not count ("Aspirin" inside "Aspirin and heparin")."""
    low = " ".join(text.lower().split())
    named = {
        letter: option.lower()
        for letter, option in opts.items()
        if option and re.search(rf"(?<!\w){re.escape(' '.join(option.lower().split()))}(?!\w)", low)
    }
    named = {k: v for k, v in named.items() if not any(v != w and v in w for w in named.values())}
    if len(named) > 1:
        return _AMBIGUOUS
    return next(iter(named), None)


def _from_box(text: str, opts: Dict[str, str]):
    box = extract_answer(text)
    return None if box is None else _resolve(box, opts)


def _from_json(text: str, opts: Dict[str, str]):
    value = json_answer(text)
    return None if value is None else _resolve(value, opts)


def _from_statement(text: str, opts: Dict[str, str]):
    tails = [(m.end(), text[m.end():].split("\n", 1)[0]) for m in _STATEMENT.finditer(text)]
    tails += [(m.start(), m.group(1)) for m in _LETTER_IS_RIGHT.finditer(text)]
    for _, tail in sorted(tails, key=lambda t: t[0], reverse=True):
        found = _resolve(_NEGATED.sub("", tail, count=1), opts)
        if found is not None:
            return found
    return None


# An option line with a verdict: "B. Heparin - incorrect", "**D. Clopidogrel** – Correct.", "Option A: wrong".
_VERDICT_LINE = re.compile(r"^[\s*_#>-]*(?:(?i:option|choice)\s+)?[(\[]?([A-Z])[)\].:]")
_VERDICT = re.compile(r"\b(not\s+(?:the\s+)?correct|incorrect|wrong)\b|\b(correct)\b|([❌✗✘])|([✅✓✔])", re.IGNORECASE)


def _from_verdicts(text: str, opts: Dict[str, str]):
    """The one option marked correct when the output gives a verdict line by line on the options
    ("A. ... - incorrect", "B. ... - correct", "C ❌"); ambiguous when none or several are marked
    correct; None when fewer than two options get a verdict (not such a list). True/false verdicts
    are not read: in an "all of the following EXCEPT" question the false one is the answer."""
    verdicts = {}
    for line in text.splitlines():
        option = _VERDICT_LINE.match(line)
        verdict = _VERDICT.search(line, option.end()) if option and option.group(1) in opts else None
        if verdict:
            verdicts[option.group(1)] = bool(verdict.group(2) or verdict.group(4))
    if len(verdicts) < 2:
        return None
    chosen = [letter for letter, right in verdicts.items() if right]
    return chosen[0] if len(chosen) == 1 else _AMBIGUOUS


# An option's mark inside a line: "A. ...", "(B) ...", "C) ...".
_OPTION_MARK = re.compile(r"(?:^|\s)[(\[]?([A-Z])[)\].:](?=\s)", re.MULTILINE)


def _from_last_line(text: str, opts: Dict[str, str]):
    lines = [line for line in (_clean(raw) for raw in text.splitlines()) if line]
    if not lines:
        return None
    # A last paragraph marking two or more options ("A. x B. y C. z") repeats the list, choosing none.
    paragraph = _clean(re.split(r"\n\s*\n", text.strip())[-1])
    if len({m.group(1) for m in _OPTION_MARK.finditer(paragraph) if m.group(1) in opts}) > 1:
        return None
    line = lines[-1]
    match = _CHOICE_LINE.fullmatch(line)
    if not match or match.group(1).upper() not in opts:
        return None
    letter, rest = match.group(1), line[match.end(1):]
    # "A patient ..." is a sentence, not a choice: after the letter comes punctuation or nothing.
    if rest and rest[0] not in ")].:":
        return None
    # A lower-case letter counts only alone ("(b)"); "b. aspirin" is more likely a list item.
    if letter.islower() and len(line.strip("()[].: ")) != 1:
        return None
    return letter.upper()


def _from_option_text(text: str, opts: Dict[str, str]):
    return _one_option_named(text, opts)


# The finders of a choice stated as such, in order: the first that names a choice decides.
_STATED = (_from_box, _from_json, _from_statement, _from_verdicts, _from_last_line)
