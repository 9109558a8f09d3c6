"""Family: metric unit conversion (length, mass, volume, time)."""

from __future__ import annotations

import random
from fractions import Fraction

from tunixrt.data.synthetic.common import Problem, conclude, fmt

# symbol: (dimension, size in the dimension's smallest unit, singular, plural)
UNITS = {
    "mm": ("length", 1, "millimeter", "millimeters"),
    "cm": ("length", 10, "centimeter", "centimeters"),
    "m": ("length", 1000, "meter", "meters"),
    "km": ("length", 1_000_000, "kilometer", "kilometers"),
    "mg": ("mass", 1, "milligram", "milligrams"),
    "g": ("mass", 1000, "gram", "grams"),
    "kg": ("mass", 1_000_000, "kilogram", "kilograms"),
    "s": ("time", 1, "second", "seconds"),
    "min": ("time", 60, "minute", "minutes"),
    "h": ("time", 3600, "hour", "hours"),
    "mL": ("volume", 1, "milliliter", "milliliters"),
    "L": ("volume", 1000, "liter", "liters"),
}
# (bigger, smaller) units of one dimension, at most 100000 apart
UNIT_PAIRS = [
    (big, small)
    for big in UNITS
    for small in UNITS
    if UNITS[big][0] == UNITS[small][0]
    and UNITS[big][1] > UNITS[small][1]
    and UNITS[big][1] // UNITS[small][1] <= 100_000
]
ADJACENT_PAIRS = [
    ("km", "m"),
    ("m", "cm"),
    ("cm", "mm"),
    ("kg", "g"),
    ("g", "mg"),
    ("h", "min"),
    ("min", "s"),
    ("L", "mL"),
]
CHAINS = [("km", "m", "cm"), ("m", "cm", "mm"), ("kg", "g", "mg"), ("h", "min", "s")]
CHAIN_FRACTIONS = [Fraction(0), Fraction(1, 2), Fraction(1, 4)]


def ratio(big: str, small: str) -> int:
    return UNITS[big][1] // UNITS[small][1]


def word(unit: str, value: int | Fraction) -> str:
    return UNITS[unit][2] if value == 1 else UNITS[unit][3]


def gen_unit_conversion(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "easy":
        return to_smaller(rng)
    if difficulty == "medium":
        return to_larger(rng)
    return mixed_to_smaller(rng) if rng.random() < 0.5 else chain(rng)


def to_smaller(rng: random.Random) -> Problem:
    big, small = rng.choice(UNIT_PAIRS)
    r = ratio(big, small)
    value = Fraction(rng.randint(2, 25))
    if rng.random() < 0.3:
        value += Fraction(1, 2)
    answer = value * r
    prompt = rng.choice(
        [
            f"Convert {fmt(value)} {word(big, value)} to {UNITS[small][3]}.",
            f"How many {UNITS[small][3]} are in {fmt(value)} {word(big, value)}?",
        ]
    )
    steps = [
        (
            "parse",
            f"Going from {UNITS[big][3]} to the smaller {UNITS[small][3]}, "
            "so the number gets bigger.",
        ),
        ("convert", f"1 {UNITS[big][2]} = {r} {UNITS[small][3]}."),
        (
            "compute",
            f"{fmt(value)} * {r} = {fmt(answer)}, so {fmt(value)} "
            f"{word(big, value)} = {fmt(answer)} {word(small, answer)}.",
        ),
        ("check", f"Going back, {fmt(answer)} / {r} = {fmt(value)}."),
        conclude(fmt(answer)),
    ]
    params = {"quantities": [[fmt(value), big]], "to": small}
    return Problem(prompt, steps, fmt(answer), params)


def to_larger(rng: random.Random) -> Problem:
    big, small = rng.choice(UNIT_PAIRS)
    r = ratio(big, small)
    # Draw the answer with a denominator that divides r, so the value to convert is whole.
    den = rng.choice([d for d in (1, 2, 4, 5, 10, 20, 100) if r % d == 0])
    answer = Fraction(rng.randint(1, 20 * den), den)
    value = answer * r
    prompt = rng.choice(
        [
            f"Convert {fmt(value)} {word(small, value)} to {UNITS[big][3]}.",
            f"How many {UNITS[big][3]} is {fmt(value)} {word(small, value)}?",
        ]
    )
    steps = [
        (
            "parse",
            f"Going from {UNITS[small][3]} to the larger {UNITS[big][3]}, "
            "so the number gets smaller.",
        ),
        ("convert", f"1 {UNITS[big][2]} = {r} {UNITS[small][3]}, so divide by {r}."),
        ("compute", f"{fmt(value)} / {r} = {fmt(answer)}."),
        ("check", f"Going back, {fmt(answer)} * {r} = {fmt(value)}."),
        conclude(fmt(answer)),
    ]
    params = {"quantities": [[fmt(value), small]], "to": big}
    return Problem(prompt, steps, fmt(answer), params)


def mixed_to_smaller(rng: random.Random) -> Problem:
    """A quantity in two units, such as 3 hours and 20 minutes, in the smaller one."""
    big, small = rng.choice(ADJACENT_PAIRS)
    r = ratio(big, small)
    whole, part = rng.randint(1, 12), rng.randint(1, r - 1)
    converted = whole * r
    answer = converted + part
    prompt = (
        f"What is {whole} {word(big, whole)} and {part} {word(small, part)} in {UNITS[small][3]}?"
    )
    steps = [
        (
            "convert",
            f"1 {UNITS[big][2]} = {r} {UNITS[small][3]}, so {whole} "
            f"{word(big, whole)} = {whole} * {r} = {converted} {UNITS[small][3]}.",
        ),
        ("compute", f"Adding the {part}: {converted} + {part} = {answer}."),
        (
            "check",
            f"{answer} is between {converted} and {converted + r}, as "
            f"expected for {whole} {word(big, whole)} and a bit.",
        ),
        conclude(str(answer)),
    ]
    params = {"quantities": [[str(whole), big], [str(part), small]], "to": small}
    return Problem(prompt, steps, str(answer), params)


def chain(rng: random.Random) -> Problem:
    """Two conversions in a row, through a middle unit."""
    big, mid, small = rng.choice(CHAINS)
    value = Fraction(rng.randint(1, 9)) + rng.choice(CHAIN_FRACTIONS)
    r1, r2 = ratio(big, mid), ratio(mid, small)
    in_mid = value * r1
    answer = in_mid * r2
    prompt = f"Convert {fmt(value)} {word(big, value)} to {UNITS[small][3]}."
    steps = [
        (
            "convert",
            f"1 {UNITS[big][2]} = {r1} {UNITS[mid][3]}, so {fmt(value)} "
            f"{word(big, value)} = {fmt(value)} * {r1} = {fmt(in_mid)} {UNITS[mid][3]}.",
        ),
        (
            "convert",
            f"1 {UNITS[mid][2]} = {r2} {UNITS[small][3]}, so {fmt(in_mid)} "
            f"{UNITS[mid][3]} = {fmt(in_mid)} * {r2} = {fmt(answer)} {UNITS[small][3]}.",
        ),
        conclude(fmt(answer)),
    ]
    params = {"quantities": [[fmt(value), big]], "to": small}
    return Problem(prompt, steps, fmt(answer), params)
