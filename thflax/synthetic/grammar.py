"""GRID corpus sentence grammar (Cooke et al., 2006).

Every GRID sentence has six words, one from each slot:
``command colour preposition letter digit adverb``, e.g. "bin blue at f two now".
The utterance id is the first character of each word ("bbaf2n"); for the digit
GRID writes the numeral, except zero, which it writes as ``z`` (real GRID files
are named like ``bbizzn`` for "bin blue in z zero now").
"""

from __future__ import annotations

import numpy as np

COMMANDS: tuple[str, ...] = ("bin", "lay", "place", "set")
COLOURS: tuple[str, ...] = ("blue", "green", "red", "white")
PREPOSITIONS: tuple[str, ...] = ("at", "by", "in", "with")
# GRID omits 'w' because "double-u" has three syllables.
LETTERS: tuple[str, ...] = tuple(c for c in "abcdefghijklmnopqrstuvwxyz" if c != "w")
DIGITS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)
ADVERBS: tuple[str, ...] = ("again", "now", "please", "soon")

SLOTS: tuple[tuple[str, ...], ...] = (COMMANDS, COLOURS, PREPOSITIONS, LETTERS, DIGITS, ADVERBS)

# GRID's file names write zero as 'z' (e.g. s1/bbizzn); other digits as numerals.
DIGIT_CHARS: dict[str, str] = {d: ("z" if i == 0 else str(i)) for i, d in enumerate(DIGITS)}

# How the letter is written for eSpeak. A bare upper-case letter is read as the
# letter name, except "A" (read as the article /@/ and merged with the previous
# word); "eh" gives /eI/.
_LETTER_TEXT: dict[str, str] = {c: c.upper() for c in LETTERS}
_LETTER_TEXT["a"] = "eh"


def utterance_id(words: list[str]) -> str:
    """GRID's 6-character id of a six-word sentence, e.g. 'bbaf2n'."""
    if len(words) != 6:
        raise ValueError(f"a GRID sentence has 6 words, got {words!r}")
    for word, slot in zip(words, SLOTS):
        if word not in slot:
            raise ValueError(f"{word!r} is not a valid GRID word for its slot")
    cmd, colour, prep, letter, digit, adverb = words
    return cmd[0] + colour[0] + prep[0] + letter + DIGIT_CHARS[digit] + adverb[0]


def sample_sentence(rng: np.random.Generator) -> tuple[list[str], str]:
    """Draws a uniformly random GRID sentence.

    Returns:
      (words, utt_id): the six lower-case words and the GRID id.
    """
    words = [slot[int(rng.integers(len(slot)))] for slot in SLOTS]
    return words, utterance_id(words)


def spoken_text(words: list[str]) -> str:
    """Text to give eSpeak so that it says the sentence as GRID speakers do.

    Returns one token per word (so eSpeak's word events map 1:1 onto ``words``).
    """
    out = list(words)
    out[3] = _LETTER_TEXT[words[3]]
    return " ".join(out)
