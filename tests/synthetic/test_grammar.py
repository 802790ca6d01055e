"""Tests of the GRID grammar (thflax/synthetic/grammar.py): sentences, ids, and every letter spoken as one
word."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.corpus  # renders faces / builds datasets: minutes

from thflax.synthetic import grammar
from thflax.io import speech

SENTENCE = ["bin", "blue", "at", "f", "two", "now"]


def test_grammar_ids_and_words_consistent():
    assert grammar.utterance_id(SENTENCE) == "bbaf2n"
    assert grammar.utterance_id(["bin", "blue", "in", "z", "zero", "now"]) == "bbizzn"
    rng = np.random.default_rng(0)
    seen_letters = set()
    for _ in range(300):
        words, uid = grammar.sample_sentence(rng)
        assert len(words) == 6 and len(uid) == 6
        for w, slot in zip(words, grammar.SLOTS):
            assert w in slot
        assert uid[0] == words[0][0] and uid[1] == words[1][0] and uid[2] == words[2][0]
        assert uid[3] == words[3] and uid[5] == words[5][0]
        assert uid[4] == grammar.DIGIT_CHARS[words[4]]
        seen_letters.add(words[3])
        assert len(grammar.spoken_text(words).split()) == 6
    assert "w" not in seen_letters and len(seen_letters) > 20
    with pytest.raises(ValueError):
        grammar.utterance_id(["bin", "blue", "at", "w", "two", "now"])


def test_every_letter_is_one_word():
    for letter in grammar.LETTERS:
        words = ["lay", "white", "with", letter, "eight", "please"]
        u = speech.synthesize(grammar.spoken_text(words), "en-us", labels=words)
        assert [w for _, _, w in u.words] == words
