import json

import pytest

from nemo_beyond_nll.domains import build
from nemo_beyond_nll.data.pipeline import count_tokens, hf_chat_template

from .fixtures import numina_row, numina_rows, read_jsonl, write_jsonl


def prompts(path):
    return {row["prompt"] for row in read_jsonl(path)}


def test_same_rows_same_split_in_any_order(tmp_path):
    rows = numina_rows(200)
    write_jsonl(tmp_path / "forward.jsonl", rows)
    write_jsonl(tmp_path / "backward.jsonl", rows[::-1])
    write_jsonl(tmp_path / "more.jsonl", rows[::-1] + [numina_row(500)])
    a = build("math", tmp_path / "forward.jsonl", tmp_path / "a", validation_fraction=0.25, progress=False)
    b = build("math", tmp_path / "backward.jsonl", tmp_path / "b", validation_fraction=0.25, progress=False)
    c = build("math", tmp_path / "more.jsonl", tmp_path / "c", validation_fraction=0.25, progress=False)
    assert prompts(tmp_path / "a" / "validation.jsonl") == prompts(tmp_path / "b" / "validation.jsonl")
    assert a["validation"] == b["validation"] == 50  # a quarter of 200, exactly
    assert a["train"] + a["validation"] == a["kept"] == 200 and c["kept"] == 201 and c["validation"] == 50
    # one row more moves at most one other row
    assert len(prompts(tmp_path / "a" / "validation.jsonl") ^ prompts(tmp_path / "c" / "validation.jsonl")) <= 2


@pytest.mark.parametrize("kept, fraction, validation", [
    (4, 0.05, 0), (4, 0.75, 3), (4, 0.99, 3), (2, 0.5, 1), (1, 0.5, 0), (10, 0.3, 3), (20, 0.05, 1), (30, 0.05, 2),
])
def test_validation_follows_the_fraction_and_leaves_a_row_to_train(tmp_path, kept, fraction, validation):
    write_jsonl(tmp_path / "rows.jsonl", numina_rows(kept))
    report = build("math", tmp_path / "rows.jsonl", tmp_path / "out", validation_fraction=fraction, progress=False)
    assert (report["train"], report["validation"]) == (kept - validation, validation)
    assert len(read_jsonl(tmp_path / "out" / "validation.jsonl")) == validation


@pytest.mark.parametrize("lines", [[], ["{broken", "[1, 2]", json.dumps({"problem": "no solution"})]])
def test_no_row_to_train_on_is_an_error_with_the_counts_and_no_files(tmp_path, lines):
    write_jsonl(tmp_path / "rows.jsonl", lines)
    with pytest.raises(ValueError) as err:
        build("math", tmp_path / "rows.jsonl", tmp_path / "out", progress=False)
    message = str(err.value)
    assert message.startswith(f"no rows to train on from {tmp_path / 'rows.jsonl'}: read {len(lines)}, kept 0")
    assert (f"skipped 3 (malformed 3)" in message) if lines else "skipped 0 (none dropped)" in message
    assert not (tmp_path / "out").exists()


def test_split_seed_changes_the_split(tmp_path):
    write_jsonl(tmp_path / "rows.jsonl", numina_rows(200))
    build("math", tmp_path / "rows.jsonl", tmp_path / "s0", validation_fraction=0.25, progress=False)
    build("math", tmp_path / "rows.jsonl", tmp_path / "s1", validation_fraction=0.25, split_seed=1, progress=False)
    assert prompts(tmp_path / "s0" / "validation.jsonl") != prompts(tmp_path / "s1" / "validation.jsonl")


def test_files_and_report(tmp_path):
    write_jsonl(tmp_path / "rows.jsonl", numina_rows(10))
    report = build("math", tmp_path / "rows.jsonl", tmp_path / "out", validation_fraction=0.3, progress=False)
    train, validation = read_jsonl(tmp_path / "out" / "train.jsonl"), read_jsonl(tmp_path / "out" / "validation.jsonl")
    assert sorted(map(json.dumps, train + validation)) == sorted(map(json.dumps, read_jsonl(tmp_path / "out" / "all.jsonl")))
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report
    assert (report["train"], report["validation"]) == (len(train), len(validation))
    assert not list((tmp_path / "out").glob("*.partial"))


def whitespace_tokens(text):
    return text.split()


@pytest.mark.parametrize(
    "tokenizer",
    [whitespace_tokens, lambda t: len(t.split()), lambda t: {"input_ids": t.split(), "attention_mask": []}],
)
def test_length_filter(tmp_path, tokenizer):
    long_row = numina_row(3)
    long_row["solution"] = "word " * 300 + long_row["solution"]
    write_jsonl(tmp_path / "rows.jsonl", [numina_row(1), numina_row(2), long_row])
    report = build("math", tmp_path / "rows.jsonl", tmp_path / "out", tokenizer=tokenizer, max_length=100, progress=False)
    assert report["kept"] == 2 and report["dropped"]["too_long"] == 1 and report["dropped_row_indices"]["too_long"] == [2]
    assert all(len(r["prompt"].split()) + len(r["completion"].split()) <= 100 for r in read_jsonl(tmp_path / "out" / "all.jsonl"))


def test_length_counts_templated_prompt(tmp_path):
    write_jsonl(tmp_path / "rows.jsonl", [numina_row(1)])
    untemplated = build("math", tmp_path / "rows.jsonl", tmp_path / "a", tokenizer=whitespace_tokens, max_length=40, progress=False)
    assert untemplated["kept"] == 1
    with pytest.raises(ValueError, match=r"kept 0, skipped 1 \(too_long 1\)"):  # the template makes it too long
        build("math", tmp_path / "rows.jsonl", tmp_path / "b", tokenizer=whitespace_tokens, max_length=40,
              chat_template=lambda text: "system " * 30 + text, progress=False)


def test_chat_template_applies_to_prompt_not_split(tmp_path):
    write_jsonl(tmp_path / "rows.jsonl", numina_rows(100))
    build("math", tmp_path / "rows.jsonl", tmp_path / "plain", validation_fraction=0.3, progress=False)
    build(
        "math", tmp_path / "rows.jsonl", tmp_path / "chat", validation_fraction=0.3, progress=False,
        chat_template=lambda text: f"<user>{text}</user><assistant>",
    )
    chat = read_jsonl(tmp_path / "chat" / "validation.jsonl")
    assert all(r["prompt"].startswith("<user>") and r["prompt"].endswith("</user><assistant>") for r in chat)
    assert {r["prompt"][len("<user>"):-len("</user><assistant>")] for r in chat} == prompts(tmp_path / "plain" / "validation.jsonl")


class FakeHFTokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


def test_hf_chat_template():
    assert hf_chat_template(FakeHFTokenizer())("hi") == "<user>hi<assistant>"
    assert hf_chat_template(FakeHFTokenizer(), system="be brief")("hi") == "<system>be brief<user>hi<assistant>"


def test_count_tokens_rejects_odd_tokenizers():
    assert count_tokens(lambda t: [1, 2, 3], "x") == 3
    for odd in (lambda t: "a string", lambda t: None, lambda t: True):
        with pytest.raises(ValueError, match="tokenizer must return"):
            count_tokens(odd, "x")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_fraction": -0.1}, "validation_fraction"),
        ({"max_length": 10}, "both tokenizer and max_length"),
        ({"tokenizer": whitespace_tokens}, "both tokenizer and max_length"),
        ({"tokenizer": whitespace_tokens, "max_length": 0}, "max_length must be a positive integer"),
        ({"tokenizer": "gpt2", "max_length": 5}, "tokenizer must be callable"),
        ({"chat_template": "chatml"}, "chat_template must be callable"),
        ({"max_lenght": 5}, "unknown math option"),
    ],
)
def test_bad_options(tmp_path, options, message):
    write_jsonl(tmp_path / "rows.jsonl", numina_rows(2))
    with pytest.raises(ValueError, match=message):
        build("math", tmp_path / "rows.jsonl", tmp_path / "out", progress=False, **options)


def test_bad_domain_and_template_output(tmp_path):
    with pytest.raises(ValueError, match="unknown domain 'code'"):
        build("code", None, tmp_path)
    write_jsonl(tmp_path / "rows.jsonl", numina_rows(2))
    with pytest.raises(ValueError, match="chat_template must return a string"):
        build("math", tmp_path / "rows.jsonl", tmp_path / "out", chat_template=lambda t: [t], progress=False)


def test_check_split_file_counts_rows_and_names_the_first_bad_line(tmp_path):
    from nemo_beyond_nll.data import SplitFileError, check_split_file

    good = json.dumps({"prompt": "p", "completion": "c", "answer": 1})
    path = tmp_path / "train.jsonl"
    path.write_text(good + "\n\n" + good + "\n")
    assert check_split_file(path) == 2
    cases = [
        (None, "no such file"), ("", "empty file"), (good + "\n{\n", ":2: not valid JSON"),
        ("3\n", ":1: a row must be a JSON object, got int"), (json.dumps({"completion": "c"}), ":1: no 'prompt' field"),
        (json.dumps({"prompt": "p", "completion": ""}), ":1: 'completion' must be a non-empty string"),
        (json.dumps({"prompt": None, "completion": "c"}), ":1: 'prompt' must be a non-empty string, got None"),
    ]
    for text, message in cases:
        path.unlink(missing_ok=True)
        if text is not None:
            path.write_text(text)
        with pytest.raises(SplitFileError, match=message) as err:
            check_split_file(path)
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    with pytest.raises(SplitFileError, match="is a folder"):
        check_split_file(tmp_path)
    path.write_bytes(b'{"prompt": "\xff", "completion": "c"}\n')
    with pytest.raises(SplitFileError, match=":1: not UTF-8"):
        check_split_file(path)


def test_check_split_file_runs_the_engines_tokenizer(tmp_path):
    from nemo_beyond_nll.data import SplitFileError, check_split_file
    from nemo_beyond_nll.data.char_tokenizer import CharTokenizer

    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps({"prompt": "ok", "completion": "ok"}) + "\n" + json.dumps({"prompt": "ok", "completion": "naïve"}) + "\n")
    assert check_split_file(path) == 2
    with pytest.raises(SplitFileError, match=r":2: 'completion': character 'ï' is outside"):
        check_split_file(path, CharTokenizer().encode)


def test_a_build_that_dies_midway_leaves_a_folder_training_refuses(tmp_path):
    from nemo_beyond_nll.data.pipeline import IncompleteData, check_complete, write_sft_splits, Example

    out = tmp_path / "out"
    rows = [{"q": f"question {i}", "a": f"answer {i}"} for i in range(40)]

    def convert(row):
        return Example(row["q"], row["a"])

    write_sft_splits(rows, convert, out, domain="t", source="s", progress=False)
    check_complete(out / "train.jsonl")  # a finished build
    before = (out / "train.jsonl").read_text()

    def dies_midway(row):
        if row["q"] == "question 30":
            raise KeyboardInterrupt  # a kill while the split files are being written
        return Example(row["q"] + "?", row["a"])

    with pytest.raises(KeyboardInterrupt):
        write_sft_splits(rows, dies_midway, out, domain="t", source="s", progress=False)
    assert (out / "train.jsonl").read_text() == before  # the old split, whole, never a half-written one
    assert not (out / "report.json").exists()
    with pytest.raises(IncompleteData, match="unfinished `nemo-beyond-nll data` build"):
        check_complete(out / "train.jsonl")
    with pytest.raises(IncompleteData):
        check_complete(out)
    write_sft_splits(rows, convert, out, domain="t", source="s", progress=False)  # built again: complete
    check_complete(out / "validation.jsonl")
    assert sorted(p.name for p in out.iterdir()) == ["all.jsonl", "report.json", "train.jsonl", "validation.jsonl"]
