"""Family: comparing decimals and fractions (which is larger, smaller, largest, smallest)."""

from __future__ import annotations

import math
import random
from fractions import Fraction

from tunixrt.data.synthetic.common import Problem, Step, conclude, fmt

DENOMINATORS = [2, 3, 4, 5, 6, 8, 10, 12]


def frac_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def two_places(value: Fraction) -> str:
    hundredths = int(value * 100)
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def gen_comparison(rng: random.Random, difficulty: str) -> Problem:
    problem = compare_decimals(rng) if difficulty == "easy" else compare_fractions(rng, difficulty)
    # None: the drawn values tie or do not fit the template, so draw a whole new problem.
    return problem if problem is not None else gen_comparison(rng, difficulty)


def compare_decimals(rng: random.Random) -> Problem | None:
    """One decimal place against two, such as 0.5 and 0.45."""
    whole = rng.choice([0, 0, 1, 2, 3])
    a = Fraction(10 * whole + rng.randint(1, 9), 10)
    b = Fraction(100 * whole + rng.randint(1, 99), 100)
    if a == b or b.denominator != 100:
        return None
    ask = rng.choice(["larger", "smaller"])
    pick = max(a, b) if ask == "larger" else min(a, b)
    other = b if pick == a else a
    prompt = f"Which is {ask}, {fmt(a)} or {fmt(b)}?"
    a2, b2 = two_places(a), two_places(b)
    rel = ">" if a > b else "<"
    steps = [
        (
            "parse",
            f"{fmt(a)} has one decimal place and {fmt(b)} has two, so pad "
            "them before comparing digits.",
        ),
        ("convert", f"Write both with two decimal places: {a2} and {b2}."),
        (
            "compare",
            f"{int(a * 100)} hundredths vs {int(b * 100)} hundredths, so {a2} {rel} {b2}.",
        ),
        ("compare", f"So {fmt(pick)} is {ask} than {fmt(other)}."),
        conclude(fmt(pick)),
    ]
    return Problem(prompt, steps, fmt(pick), {"values": [fmt(a), fmt(b)], "ask": ask})


def compare_fractions(rng: random.Random, difficulty: str) -> Problem | None:
    """Two fractions (medium), or two fractions and a decimal (hard)."""
    count = 2 if difficulty == "medium" else 3
    values: list[Fraction] = []
    while len(values) < count - (difficulty == "hard"):
        den = rng.choice(DENOMINATORS)
        v = Fraction(rng.randint(1, den - 1), den)
        if v not in values:
            values.append(v)
    texts = [frac_text(v) for v in values]
    steps: list[Step] = []
    if difficulty == "hard":
        dec = Fraction(rng.randint(1, 9), 10)
        if dec in values:
            return None
        pos = rng.randint(0, len(values))
        values.insert(pos, dec)
        texts.insert(pos, fmt(dec))
        steps.append(
            (
                "convert",
                f"Write the decimal as a fraction: {fmt(dec)} = {dec.numerator}/{dec.denominator}.",
            )
        )
    ask = rng.choice(["larger", "smaller"] if count == 2 else ["largest", "smallest"])
    pick = max(values) if ask in ("larger", "largest") else min(values)
    answer = texts[values.index(pick)]
    lcd = math.lcm(*(v.denominator for v in values))
    scaled = [v * lcd for v in values]
    rewrites = ", ".join(f"{t} = {int(s)}/{lcd}" for t, s in zip(texts, scaled, strict=True))
    steps.append(("convert", f"Use the common denominator {lcd}: {rewrites}."))
    ranked = sorted(zip(scaled, texts, strict=True), reverse=True)
    steps.append(
        (
            "compare",
            "Comparing numerators: " + " > ".join(f"{int(s)} ({t})" for s, t in ranked) + ".",
        )
    )
    if count == 2:
        prompt = f"Which is {ask}, {texts[0]} or {texts[1]}?"
        a, b = values
        steps.append(
            (
                "check",
                f"Cross-multiplying: {a.numerator} * {b.denominator} = "
                f"{a.numerator * b.denominator} and {b.numerator} * {a.denominator} = "
                f"{b.numerator * a.denominator}, which agrees.",
            )
        )
    else:
        prompt = f"Which is the {ask}: {texts[0]}, {texts[1]} or {texts[2]}?"
        steps.append(("compare", f"So the {ask} is {answer}."))
    steps.append(conclude(answer))
    return Problem(prompt, steps, answer, {"values": texts, "ask": ask})
