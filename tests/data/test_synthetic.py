import pytest

from nemo_beyond_nll.data.char_tokenizer import CharTokenizer
from nemo_beyond_nll.data.synthetic import TASKS, make_examples, make_split


@pytest.mark.parametrize("task", list(TASKS))
def test_tasks_are_deterministic_and_correct(task):
    a = make_examples(task, 50, seed=3)
    assert a == make_examples(task, 50, seed=3)
    assert a != make_examples(task, 50, seed=4)
    for ex in a:
        word = ex["prompt"].split(" ", 1)[1].rstrip("=")
        expected = {"reverse": word[::-1], "sort": "".join(sorted(word)), "copy": word,
                    "swap": word[-1] + word[1:-1] + word[0]}.get(task)
        if task == "add":
            x, y = map(int, word.split())
            expected = str(x + y)
        if task == "shift":
            expected = "".join("abcdefghij"[("abcdefghij".index(c) + 1) % 10] for c in word)
        assert ex["completion"] == expected


def test_split_holds_out_prompts():
    train, validation = make_split("sort", 500, 50, seed=0)
    assert len(train) == 500 and len(validation) == 50
    assert not {e["prompt"] for e in validation} & {e["prompt"] for e in train}


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown synthetic task 'nope'"):
        make_examples("nope", 1, 0)


def test_char_tokenizer_round_trip_and_masks():
    tok = CharTokenizer()
    assert tok.vocab_size % 128 == 0
    assert tok.decode(tok.encode("sort cab=") + [tok.eos_id] + tok.encode("zz")) == "sort cab="
    ex = tok.encode_example("ab=", "ba", seq_length=8)
    # bos a b = b a eos pad pad: labels are the next tokens; the loss is on "b", "a", eos.
    assert ex["tokens"].tolist()[:4] == [tok.bos_id] + tok.encode("ab=")
    assert ex["labels"].tolist()[:6] == tok.encode("ab=") + tok.encode("ba") + [tok.eos_id]
    assert ex["loss_mask"].tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="does not fit"):
        tok.encode_example("abcdef=", "fedcba", seq_length=8)
    with pytest.raises(ValueError, match="outside the tokenizer"):
        tok.encode("é")


def test_pack_example_truncates_only_when_asked():
    from nemo_beyond_nll.data.packing import pack_example

    ex = pack_example([1, 5, 6], [7, 8, 9, 2], seq_length=5, pad_id=0, truncate=True)
    assert ex["tokens"].tolist() == [1, 5, 6, 7, 8] and ex["labels"].tolist() == [5, 6, 7, 8, 9]
    assert ex["loss_mask"].tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="does not fit"):
        pack_example([1, 5, 6], [7, 8, 9, 2], seq_length=5, pad_id=0)
    with pytest.raises(ValueError, match="does not fit"):
        pack_example([1] * 6, [2], seq_length=5, pad_id=0, truncate=True)
