"""SFT rows as the paper's own runs built them (`nemo-beyond-nll data DOMAIN --protocol paper`).

The paper trained on processed hub subsets (`PAPER_SOURCES`) whose text sits inside `extra_info`
(`question`, `answer`, and per-family prompt strings) while the top-level `prompt` is a list of
chat messages. Per domain:

- math: the ~67k-row NuminaMath-CoT subset, unfiltered; the user turn is the bare question and the
  target the whole solution;
- medical: m23k; the target is the distilled answer string only (no reasoning), after a prompt that
  asks to reason and box the final answer (`extra_info.qwen_prompt` / `llama_prompt`);
- figfont: reasoning-gym figlet puzzles (seed 42, words of 2-5 letters, 40k training rows, the test
  set items 40000-44999 of the same stream) after a system prompt asking for the word alone.

How the prompt is put together depends on the backbone family (`FAMILIES`), as in the paper's
trainer: Qwen on math gets the tokenizer's chat template around the question; Llama base models get
a fixed Llama-3 chat prompt with the boxed-answer instruction around the user text, and DeepSeek
base models a fixed `User: ... Assistant:` prompt; Qwen on medical and figfont gets the row's own
prompt string. On medical and figfont the fixed Llama prompt wraps the row's `llama_prompt`, which is
itself a full chat prompt: the paper's trainer does so, and it is kept here to match its runs.
The EOS token is appended at training time (both engines do), and prompt tokens carry no loss.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Union

from ..data.pipeline import Example, SkipRow, write_sft_splits
from ..data.sources import open_rows
from ..utils.files import write_jsonl
from .math.answers import extract_answer
from .medical.answers import parse_options

PAPER_SOURCES = {
    "math": "gaotang/numina-cot-subset-67k",
    "medical": "gaotang/medical_sft_processed",
    "figfont": "gaotang/figlet_font",
}
FAMILIES = ("qwen", "llama", "deepseek")
BOXED = "Please reason step by step, and put your final answer within \\boxed{}."
# The figfont generator's settings in the paper's runs.
FIGFONT_SEED = 42
FIGFONT_OPTIONS = {"min_word_len": 2, "max_word_len": 5, "space_letters": True}
FIGFONT_TRAIN = (0, 40000)
FIGFONT_TEST = (40000, 45000)
GENERATE = "generate"  # --source generate: figfont puzzles made here rather than read from the hub


def family_of(model_id: str) -> str:
    """The prompt family of a backbone id, as the paper's trainer decides it from the name."""
    name = model_id.lower()
    if "llama" in name and "instruct" not in name:
        return "llama"
    if "deepseek" in name and "instruct" not in name:
        return "deepseek"
    return "qwen"


def _llama_turn(role: str, text: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>\n"


def llama_prompt(user_text: str) -> str:
    """The fixed Llama-3 chat prompt of the paper's trainer for base Llama models."""
    return ("<|begin_of_text|>" + _llama_turn("system", "You are a helpful assistant.")
            + _llama_turn("user", f"{user_text}\n{BOXED}") + "<|start_header_id|>assistant<|end_header_id|>\n\n")


def deepseek_prompt(user_text: str) -> str:
    """The fixed prompt of the paper's trainer for base DeepSeek models."""
    return f"<｜begin▁of▁sentence｜>User: {user_text}\n{BOXED}\n\nAssistant:"


def nested(row: Any, path: str) -> Any:
    """row["a"]["b"] for path "a.b"; None where a level is missing."""
    value = row
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def nested_text(row: Any, *paths: str) -> str:
    """The first non-blank string among `paths` (dotted), or SkipRow("malformed")."""
    for path in paths:
        value = nested(row, path)
        if isinstance(value, str) and value.strip():
            return value
    raise SkipRow("malformed")


def paper_example(domain: str, row: Any, family: str, chat_template: Optional[Callable[[str], str]] = None) -> Example:
    """One row of the authors' processed subsets (or of the generator) as the paper trained on it."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if domain == "math":
        question = nested_text(row, "extra_info.question", "question")
        solution = nested_text(row, "extra_info.answer", "answer")
        if family == "llama":
            prompt = llama_prompt(question)
        elif family == "deepseek":
            prompt = deepseek_prompt(question)
        else:
            if chat_template is None:
                raise ValueError("math with the qwen family needs the backbone's chat template (--tokenizer)")
            prompt = chat_template(question)
        answer = extract_answer(solution)
        return Example(prompt, solution, {"answer": answer} if answer is not None else {})
    if domain == "medical":
        question = nested_text(row, "extra_info.question", "question")
        target = nested_text(row, "extra_info.answer_raw", "extra_info.qwen_reponse_no_thinking",
                             "distilled_answer_string")
        letter = nested_text(row, "extra_info.answer_letter", "reward_model.ground_truth", "answer_letter").strip()
        options = parse_options(question)
        fields = {"answer": letter, "options": options or None}
        if family == "qwen":
            prompt = nested_text(row, "extra_info.qwen_prompt")
        else:
            prompt = llama_prompt(nested_text(row, "extra_info.llama_prompt"))
        return Example(prompt, target.strip(), fields)
    if domain == "figfont":
        question = nested_text(row, "extra_info.question", "question")
        answer = nested_text(row, "extra_info.answer", "answer").strip()
        key = "extra_info.qwen_prompt" if family == "qwen" else "extra_info.llama_prompt"
        given = nested(row, key) or nested(row, key.split(".", 1)[1])
        prompt = given if isinstance(given, str) and given.strip() else figfont_prompt(question, family)
        if family != "qwen":
            prompt = llama_prompt(prompt)
        fields = {"answer": answer}
        if isinstance(row.get("font"), str):
            fields["font"] = row["font"]
        return Example(prompt, answer, fields)
    raise ValueError(f"unknown domain {domain!r}")


FIGFONT_SYSTEM = ("You are an expert at decoding Figlet Font ASCII art. When given Figlet Font text, identify the "
                  "word it represents and output only that without any explanations or additional text.")


def figfont_prompt(question: str, family: str) -> str:
    """The figfont prompt for generated puzzles: the system prompt, then the puzzle as the user turn."""
    if family == "qwen":
        return (f"<|im_start|>system\n{FIGFONT_SYSTEM}<|im_end|>\n<|im_start|>user\n{question}\n<|im_end|>\n"
                f"<|im_start|>assistant\n")
    return ("<|begin_of_text|><|begin_of_text|>" + _llama_turn("system", FIGFONT_SYSTEM).rstrip("\n")
            + _llama_turn("user", question).rstrip("\n") + "<|start_header_id|>assistant<|end_header_id|>\n\n")


@contextmanager
def sorted_fonts() -> Iterator[None]:
    """reasoning-gym picks a font from pyfiglet's font list, which pyfiglet returns in file-system
    order: sort it while generating, so a seed gives the same puzzles on every machine."""
    from reasoning_gym.cognition import figlet_fonts

    own = figlet_fonts.OK_FONTS
    figlet_fonts.OK_FONTS = sorted(own)
    try:
        yield
    finally:
        figlet_fonts.OK_FONTS = own


def figfont_items(start: int, stop: int, seed: int = FIGFONT_SEED) -> Iterator[dict]:
    """Items start..stop-1 of the paper's figlet stream (item i is drawn from seed + i), fonts sorted."""
    import reasoning_gym

    with sorted_fonts():
        puzzles = reasoning_gym.create_dataset("figlet_font", size=max(stop, 1), seed=seed, **FIGFONT_OPTIONS)
        for index in range(start, stop):
            item = puzzles[index]
            yield {"question": item["question"], "answer": item["answer"], "font": item["metadata"]["font"],
                   "index": index}


def truncating(tokenizer: Any, max_length: int) -> Callable[[Example], Example]:
    """Cut an example's completion at its end so prompt + completion + EOS fit `max_length` tokens
    (a prompt that alone does not fit drops the row as too_long)."""

    def ids(text: str):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def cut(example: Example) -> Example:
        room = max_length - 1 - len(ids(example.prompt))
        if room <= 0:
            raise SkipRow("too_long")
        completion = ids(example.completion)
        if len(completion) <= room:
            return example
        return Example(example.prompt, tokenizer.decode(completion[:room]), example.fields,
                       (*example.notes, "truncated"))

    return cut


def build_paper(
    domain: str,
    source: Optional[Union[str, Path]],
    out_dir: Union[str, Path],
    *,
    family: str = "qwen",
    chat_template: Optional[Callable[[str], str]] = None,
    tokenizer: Any = None,
    max_length: Optional[int] = None,
    limit: Optional[int] = None,
    test_limit: Optional[int] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """Write `domain`'s SFT files as the paper built them (see the module's text) into `out_dir`.

    `source`: the authors' hub subset by default, a local copy of it, or for figfont "generate"
    (the seeded stream, fonts sorted). No validation split (the paper trains on every row), no
    deduplication, no answer filter. With `tokenizer` (a Hugging Face tokenizer) and `max_length`,
    a longer row is cut at its end instead of dropped. Figfont also writes `test.jsonl` (the 5,000
    test items) and drops from training any item whose (word, font) pair is in the test set.
    """
    if (tokenizer is None) != (max_length is None):
        raise ValueError("truncation needs both tokenizer and max_length")
    source = PAPER_SOURCES[domain] if source is None else source
    out_dir = Path(out_dir)
    test_pairs = set()
    if domain == "figfont":
        if str(source) == GENERATE:
            rows = figfont_items(*FIGFONT_TRAIN) if limit is None else figfont_items(0, limit)
            total = limit or FIGFONT_TRAIN[1]
            test = list(figfont_items(FIGFONT_TEST[0], FIGFONT_TEST[0] + (test_limit or FIGFONT_TEST[1] - FIGFONT_TEST[0])))
        else:
            rows, total = open_rows(source, split="train", limit=limit)
            test_rows, _ = open_rows(source, split="test", limit=test_limit)
            test = [{"question": nested_text(r, "extra_info.question", "question"),
                     "answer": nested_text(r, "extra_info.answer", "answer").strip(),
                     **({"font": r["font"]} if isinstance(r.get("font"), str) else {})} for r in test_rows]
        test_pairs = {(t["answer"], t.get("font")) for t in test if t.get("font")}
        out_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(out_dir / "test.jsonl", [{"question": t["question"], "answer": t["answer"],
                                               **({"font": t["font"]} if "font" in t else {})} for t in test])
    else:
        rows, total = open_rows(source, split="train", limit=limit)
    cut = truncating(tokenizer, max_length) if tokenizer is not None else None

    def to_example(row):
        if test_pairs and (nested(row, "answer"), row.get("font")) in test_pairs:
            raise SkipRow("in_test_set")
        example = paper_example(domain, row, family, chat_template)
        return cut(example) if cut else example

    report = write_sft_splits(rows, to_example, out_dir, domain=domain, source=f"{source} (paper protocol, {family})",
                              reasons=("in_test_set",), validation_fraction=0.0, dedup=False, total=total,
                              progress=progress)
    report["protocol"] = {"name": "paper", "family": family, "max_length": max_length,
                          "test_rows": len(test) if domain == "figfont" else None}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
