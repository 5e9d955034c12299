import pytest

from nemo_beyond_nll.domains.figfont import score


@pytest.mark.parametrize("pred", ["BABBLED", "babbled", "  Babbled\n", "\tBABBLED  "])
def test_match_up_to_case_and_space(pred):
    assert score(pred, "BABBLED")


@pytest.mark.parametrize("pred", [None, "", "BABBLE", "BABBLED.", "B A B B L E D", "The word is BABBLED"])
def test_anything_else_is_wrong(pred):
    assert not score(pred, "BABBLED")


def test_inner_spaces_are_normalised_for_multi_word_answers():
    assert score("hello   World", "HELLO WORLD")
    assert not score("helloworld", "HELLO WORLD")


@pytest.mark.parametrize("gold", [None, "", "  ", 5])
def test_bad_gold(gold):
    with pytest.raises(ValueError, match="gold answer"):
        score("X", gold)


def test_bad_prediction_type():
    with pytest.raises(ValueError, match="prediction must be a string"):
        score(5, "X")
