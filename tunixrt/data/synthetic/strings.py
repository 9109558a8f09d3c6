"""Families: string reversal, sorting (numbers, letters) and counting (letters, items)."""

from __future__ import annotations

import itertools
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunixrt.data.synthetic.common import Problem, Step, conclude, join_and
from tunixrt.data.synthetic.words import LONG_WORDS, SHORT_WORDS

# ---------------------------------------------------------------------------------------
# Where these families take their words


@dataclass(frozen=True)
class Lexicon:
    """The words of the string families: the word lists, or, with probability `invented`
    for each word, a string of random letters as long as a list word of its kind.

    A few hundred listed words let a small model recall each word's spelling instead of
    learning to read one out of its prompt; invented words make it read. With invented=0
    the RNG is drawn exactly as the word lists alone draw it, so the bundled files stay
    the same."""

    invented: float = 0.0

    def short(self, rng: random.Random) -> str:
        return self._invented(rng, 3, 5) if self._invents(rng) else rng.choice(SHORT_WORDS)

    def long(self, rng: random.Random) -> str:
        return self._invented(rng, 6, 10) if self._invents(rng) else rng.choice(LONG_WORDS)

    def any(self, rng: random.Random) -> str:
        if self._invents(rng):
            return self._invented(rng, 3, 10)
        return rng.choice(SHORT_WORDS + LONG_WORDS)

    def two_short(self, rng: random.Random) -> tuple[str, str]:
        if self.invented == 0.0:
            first, second = rng.sample(SHORT_WORDS, 2)
            return first, second
        first = self.short(rng)
        second = self.short(rng)
        while second == first:
            second = self.short(rng)
        return first, second

    def _invents(self, rng: random.Random) -> bool:
        return self.invented > 0.0 and rng.random() < self.invented

    @staticmethod
    def _invented(rng: random.Random, shortest: int, longest: int) -> str:
        length = rng.randint(shortest, longest)
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(length))


DICTIONARY = Lexicon()

# ---------------------------------------------------------------------------------------
# String reversal


def gen_string_reversal(
    rng: random.Random, difficulty: str, words: Lexicon = DICTIONARY
) -> Problem:
    if difficulty == "hard":
        return reverse_two_words(rng, words)
    text = words.short(rng) if difficulty == "easy" else words.long(rng)
    answer = text[::-1]
    prompt = rng.choice(
        [
            f"Reverse the string '{text}'.",
            f"Write '{text}' backwards.",
            f"What is '{text}' spelled backwards?",
        ]
    )
    steps = [
        ("parse", f"The word '{text}' has {len(text)} letters: {', '.join(text)}."),
        ("compute", f"Reading them from last to first: {', '.join(answer)}."),
        (
            "check",
            f"The result also has {len(answer)} letters and starts with "
            f"'{text[-1]}', the last letter of '{text}'.",
        ),
        conclude(answer),
    ]
    return Problem(prompt, steps, answer, {"text": text})


def reverse_two_words(rng: random.Random, words: Lexicon) -> Problem:
    first, second = words.two_short(rng)
    text = f"{first} {second}"
    answer = text[::-1]
    prompt = rng.choice(
        [
            f"Reverse the string '{text}' character by character.",
            f"Write '{text}' backwards, letter by letter.",
        ]
    )
    steps = [
        ("parse", f"The string has two words, '{first}' and '{second}', separated by a space."),
        (
            "compute",
            "Reversing the whole string reverses the word order and the letters inside each word.",
        ),
        (
            "compute",
            f"'{second}' becomes '{second[::-1]}' and '{first}' becomes '{first[::-1]}'.",
        ),
        ("compute", f"In reverse order with the space between: '{answer}'."),
        conclude(answer),
    ]
    return Problem(prompt, steps, answer, {"text": text})


# ---------------------------------------------------------------------------------------
# Sorting numbers or the letters of a word


def gen_sorting(rng: random.Random, difficulty: str, words: Lexicon = DICTIONARY) -> Problem:
    if difficulty == "hard" and rng.random() < 0.5:
        return sort_letters(rng, words)
    count, low = {"easy": (4, 1), "medium": (5, 1), "hard": (6, -50)}[difficulty]
    items = rng.sample(range(low, 100), count)
    order = "ascending" if difficulty == "easy" or rng.random() < 0.5 else "descending"
    ordered = sorted(items, reverse=order == "descending")
    answer = ", ".join(str(x) for x in ordered)
    listed = ", ".join(str(x) for x in items)
    if order == "ascending":
        prompt = f"Sort these numbers from smallest to largest: {listed}."
        chain = " < ".join(str(x) for x in ordered)
        steps_order = ("compute", f"From smallest to largest: {chain}.")
    else:
        prompt = f"Sort these numbers from largest to smallest: {listed}."
        chain = " > ".join(str(x) for x in ordered)
        steps_order = ("compute", f"From largest to smallest: {chain}.")
    steps = [
        ("parse", f"There are {count} numbers: {listed}."),
        ("compare", f"The smallest is {min(items)} and the largest is {max(items)}."),
        steps_order,
        ("check", f"The sorted list still has {count} numbers, each used once."),
        conclude(answer),
    ]
    return Problem(prompt, steps, answer, {"kind": "numbers", "items": items, "order": order})


def sort_letters(rng: random.Random, words: Lexicon) -> Problem:
    text = words.long(rng)
    answer = "".join(sorted(text))
    prompt = f"Sort the letters of '{text}' in alphabetical order."
    steps = [
        ("parse", f"The letters of '{text}' are {', '.join(text)}."),
        ("compute", f"In alphabetical order: {', '.join(answer)}."),
        (
            "check",
            f"Both lists have {len(text)} letters; '{answer[0]}' comes first "
            f"and '{answer[-1]}' comes last in the alphabet.",
        ),
        conclude(answer),
    ]
    return Problem(prompt, steps, answer, {"kind": "letters", "word": text, "order": "ascending"})


# ---------------------------------------------------------------------------------------
# Counting letters, occurrences of a letter, or list items with a property


def gen_counting(
    rng: random.Random, difficulty: str, words: Lexicon = DICTIONARY, tally: bool = False
) -> Problem:
    """`tally`: the letter and item traces keep a running count, one item at a time,
    instead of naming the hits at once."""
    if difficulty == "easy":
        return count_length(rng, words)
    if difficulty == "medium":
        return tally_letter(rng, words) if tally else count_letter(rng, words)
    return tally_items(rng) if tally else count_items(rng)


def count_length(rng: random.Random, words: Lexicon) -> Problem:
    text = words.any(rng)
    positions = ", ".join(f"{c}({i})" for i, c in enumerate(text, start=1))
    prompt = rng.choice(
        [f"How many letters are in the word '{text}'?", f"Count the letters in '{text}'."]
    )
    steps = [
        ("parse", f"Number each letter of '{text}': {positions}."),
        ("compute", f"The last letter is number {len(text)}, so there are {len(text)} letters."),
        (
            "check",
            f"Counting again from the end: {', '.join(reversed(text))} is {len(text)} letters too.",
        ),
        conclude(str(len(text))),
    ]
    return Problem(prompt, steps, str(len(text)), {"kind": "length", "text": text})


def count_letter(rng: random.Random, words: Lexicon) -> Problem:
    text, letter = draw_letter(rng, words)
    hits = [i for i, c in enumerate(text, start=1) if c == letter]
    prompt = f"How many times does the letter '{letter}' appear in '{text}'?"
    steps: list[Step] = [("parse", f"Go through '{text}' letter by letter: {', '.join(text)}.")]
    if hits:
        where = join_and([str(i) for i in hits])
        steps.append(
            ("compute", f"'{letter}' is at position{'s' if len(hits) > 1 else ''} {where}.")
        )
        steps.append(("compute", f"That is {len(hits)} time{'s' if len(hits) > 1 else ''}."))
        steps.append(
            (
                "check",
                f"The other {len(text) - len(hits)} letters are not "
                f"'{letter}', and {len(hits)} + {len(text) - len(hits)} = {len(text)}, "
                f"the length of '{text}'.",
            )
        )
    else:
        steps.append(("compute", f"None of the letters is '{letter}', so it appears 0 times."))
    steps.append(conclude(str(len(hits))))
    params = {"kind": "letter", "text": text, "letter": letter}
    return Problem(prompt, steps, str(len(hits)), params)


def draw_letter(rng: random.Random, words: Lexicon) -> tuple[str, str]:
    """A long word and a letter to count in it: mostly one of its letters; sometimes
    one it lacks, so 0 is a possible answer."""
    text = words.long(rng)
    if rng.random() < 0.85:
        return text, rng.choice(text)
    return text, rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c not in text])


def tally_letter(rng: random.Random, words: Lexicon) -> Problem:
    text, letter = draw_letter(rng, words)
    prompt = f"How many times does the letter '{letter}' appear in '{text}'?"
    running = itertools.accumulate(int(c == letter) for c in text)
    tally = ", ".join(
        f"{c} vs {letter} {'yes' if c == letter else 'no'} {n}"
        for c, n in zip(text, running, strict=True)
    )
    hits = text.count(letter)
    steps: list[Step] = [
        ("parse", f"Go through '{text}' letter by letter: {', '.join(text)}."),
        ("compute", f"Compare each with '{letter}', counting as I go: {tally}."),
        ("compute", f"That is {hits} time{'' if hits == 1 else 's'}."),
        conclude(str(hits)),
    ]
    return Problem(prompt, steps, str(hits), {"kind": "letter", "text": text, "letter": letter})


def tally_items(rng: random.Random) -> Problem:
    items, threshold = draw_items(rng)
    listed = ", ".join(str(x) for x in items)
    if threshold is None:
        prompt = f"How many of these numbers are even: {listed}?"
        question = "Is each even?"
        hits = [x % 2 == 0 for x in items]
        verdicts = ["even" if hit else "odd" for hit in hits]
    else:
        prompt = f"How many of these numbers are greater than {threshold}: {listed}?"
        question = f"Is each greater than {threshold}?"
        hits = [x > threshold for x in items]
        verdicts = [f"vs {threshold} {'yes' if hit else 'no'}" for hit in hits]
    running = list(itertools.accumulate(map(int, hits)))
    tally = ", ".join(f"{x} {v} {n}" for x, v, n in zip(items, verdicts, running, strict=True))
    steps: list[Step] = [
        ("parse", f"The list has {len(items)} numbers: {listed}."),
        ("compute", f"{question} Counting as I go: {tally}."),
        ("compute", f"That makes {running[-1]}."),
        conclude(str(running[-1])),
    ]
    params: dict[str, Any] = {"kind": "even" if threshold is None else "greater", "items": items}
    if threshold is not None:
        params["threshold"] = threshold
    return Problem(prompt, steps, str(running[-1]), params)


def draw_items(rng: random.Random) -> tuple[list[int], int | None]:
    """6-9 numbers from 1 to 60 and, half the time, a threshold to count those above
    (None: count the even ones)."""
    items = [rng.randint(1, 60) for _ in range(rng.randint(6, 9))]
    return items, (None if rng.random() < 0.5 else rng.randint(15, 45))


def count_items(rng: random.Random) -> Problem:
    items, threshold = draw_items(rng)
    listed = ", ".join(str(x) for x in items)
    if threshold is None:
        kind, label = "even", "even"
        hits = [x for x in items if x % 2 == 0]
        prompt = f"How many of these numbers are even: {listed}?"
        rest = "odd"
    else:
        kind, label = "greater", f"greater than {threshold}"
        hits = [x for x in items if x > threshold]
        prompt = f"How many of these numbers are greater than {threshold}: {listed}?"
        rest = f"not greater than {threshold}"
    misses = [x for x in items if x not in hits]
    found = ", ".join(str(x) for x in hits) if hits else "none"
    steps = [
        ("parse", f"The list has {len(items)} numbers: {listed}."),
        ("compute", f"The {label} ones are: {found}."),
        ("compute", f"That makes {len(hits)}."),
        (
            "check",
            f"The other {len(misses)} are {rest}, and {len(hits)} + {len(misses)} = {len(items)}.",
        ),
        conclude(str(len(hits))),
    ]
    params: dict[str, Any] = {"kind": kind, "items": items}
    if threshold is not None:
        params["threshold"] = threshold
    return Problem(prompt, steps, str(len(hits)), params)


# The families of this module by name, each with the words it draws from.
WORD_FAMILIES: dict[str, Callable[[random.Random, str, Lexicon], Problem]] = {
    "counting": gen_counting,
    "sorting": gen_sorting,
    "string_reversal": gen_string_reversal,
}
