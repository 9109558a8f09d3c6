"""Generate the bundled dev reasoning dataset (datasets/dev-reasoning).

Synthetic, deterministic and standard-library only: every problem is drawn from a
`random.Random` seeded from `--seed` and the split name, its reasoning steps are computed
from the problem itself, and the output files are byte-identical for the same arguments.

Writes train.jsonl and valid.jsonl (reasoning traces), eval.jsonl (eval items) and
manifest.json. The tokenizer entry of the manifest belongs to scripts/train_tokenizer.py:
it is kept only while tokenizer.json is unchanged and was trained on exactly the
train/valid files written now; otherwise it is dropped and the tokenizer must be retrained.

    python scripts/make_dataset.py && python scripts/train_tokenizer.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATASET_KEY = "dev_reasoning"
DATASET_VERSION = "1.0.0"
SCHEMA_VERSION = "1.0"
TRACE_VERSION = "1.0"
GENERATOR = "scripts/make_dataset.py"
DIFFICULTIES = ("easy", "medium", "hard")
EVAL_SECTION = "in_distribution"
MAX_ATTEMPTS = 2000  # draws per record before giving up on finding an unseen problem


@dataclass(frozen=True)
class Problem:
    prompt: str
    steps: list[tuple[str, str]]  # (type, content)
    answer: str
    params: dict[str, Any]  # the structured problem, enough to recompute the answer


# ---------------------------------------------------------------------------------------
# Shared vocabulary and number formatting

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonah",
         "Kira", "Liam", "Maya", "Nico", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara",
         "Umar", "Vera", "Wes", "Yuki", "Zane"]

# (container, containers, item kinds that fit it)
CONTAINERS = [
    ("box", "boxes", ["pens", "pencils", "crayons", "markers"]),
    ("crate", "crates", ["apples", "oranges", "lemons", "pears"]),
    ("bag", "bags", ["marbles", "buttons", "beads", "candies"]),
    ("pack", "packs", ["cards", "stickers", "batteries", "napkins"]),
    ("carton", "cartons", ["eggs", "juice bottles", "yogurts"]),
    ("shelf", "shelves", ["books", "plates", "jars"]),
    ("tray", "trays", ["cookies", "muffins", "cupcakes"]),
    ("basket", "baskets", ["tomatoes", "plums", "potatoes"]),
]

SHORT_WORDS = [
    "cat", "dog", "sun", "map", "cup", "pen", "box", "key", "hat", "owl", "fox", "bus",
    "jam", "net", "log", "ink", "arm", "bee", "cow", "egg", "fig", "gem", "hen", "ice",
    "jet", "kit", "lid", "mud", "nut", "oak", "pig", "rug", "sky", "toy", "van", "web",
    "yak", "zip", "tree", "bird", "fish", "lamp", "door", "rain", "snow", "wind", "moon",
    "star", "rock", "sand", "leaf", "milk", "bread", "apple", "grape", "lemon", "melon",
    "peach", "chair", "table", "clock", "plant", "river", "cloud", "storm", "stone",
    "brick", "glass", "paper", "pencil", "water", "light", "night", "horse", "sheep",
    "tiger", "zebra", "camel", "eagle", "shark", "whale", "mouse", "otter", "panda",
    "koala", "llama", "robin", "crane", "train", "plane", "truck", "wagon", "piano",
    "flute", "drum", "harp", "song", "note", "book", "page", "word", "code", "data",
    "disk", "file", "loop", "node", "tick", "wave", "beam", "coin", "gold", "iron", "salt",
    "rice", "corn", "bean", "soup", "cake", "pie", "tea", "jar", "bowl", "fork", "knife",
    "spoon", "plate", "sock", "shoe", "coat", "scarf", "glove", "ring", "bell", "kite",
    "ball", "game", "card", "dice", "path", "road", "hill", "lake", "pond", "farm", "barn",
    "shed", "nest", "hive", "seed", "root", "stem", "bark", "pine", "palm", "rose", "lily",
]

LONG_WORDS = [
    "planet", "garden", "window", "bridge", "castle", "rocket", "basket", "candle", "dragon",
    "forest", "guitar", "hammer", "island", "jacket", "kitten", "ladder", "magnet", "needle",
    "orange", "pepper", "rabbit", "saddle", "tunnel", "violin", "walnut", "yellow", "anchor",
    "button", "carpet", "dinner", "engine", "falcon", "ginger", "harbor", "insect", "jungle",
    "kettle", "lizard", "marble", "number", "oyster", "pillow", "quartz", "ribbon", "silver",
    "turtle", "valley", "wizard", "blanket", "captain", "diamond", "elephant", "feather",
    "giraffe", "harvest", "journey", "kingdom", "lantern", "machine", "network", "octopus",
    "penguin", "rainbow", "sandwich", "teacher", "uniform", "volcano", "weather", "alphabet",
    "balloon", "chimney", "dolphin", "eclipse", "fountain", "gravity", "horizon", "library",
    "mountain", "notebook", "painting", "question", "science", "treasure", "umbrella",
    "vitamin", "whistle", "backpack", "calendar", "dinosaur", "envelope", "firework",
    "hedgehog", "keyboard", "lemonade", "magazine", "necklace", "pancake", "pineapple",
    "sunflower", "triangle", "universe", "waterfall", "strawberry", "butterfly", "telescope",
    "chocolate", "adventure", "crocodile", "lighthouse", "snowflake", "blueberry",
    "pyramid", "compass", "glacier", "meadow", "tornado", "avocado", "cucumber", "spinach",
    "biscuit", "popcorn", "printer", "monitor", "battery", "cabinet", "cushion", "mirror",
]

NONSENSE = [("wug", "wugs"), ("dax", "daxes"), ("blicket", "blickets"), ("fep", "feps"),
            ("zorb", "zorbs"), ("glim", "glims"), ("tove", "toves"), ("snark", "snarks"),
            ("vorp", "vorps"), ("quib", "quibs"), ("mip", "mips"), ("tulver", "tulvers"),
            ("krell", "krells"), ("yorn", "yorns"), ("plim", "plims"), ("dreb", "drebs")]

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def fmt(value: int | Fraction) -> str:
    """Exact decimal text of a terminating rational: 5, 2.5, -0.125."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    sign, value = ("-" if value < 0 else ""), abs(value)
    for places in range(1, 13):
        scaled = value * 10**places
        if scaled.denominator == 1:
            whole, frac = divmod(scaled.numerator, 10**places)
            return f"{sign}{whole}.{frac:0{places}d}"
    raise ValueError(f"{value} has no short decimal form")


def paren(value: int | Fraction) -> str:
    """A number as an operand: negatives in parentheses, as in 3 * (-2)."""
    return f"({fmt(value)})" if value < 0 else fmt(value)


def join_and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def conclude(answer: str) -> tuple[str, str]:
    return ("conclude", f"The answer is {answer}.")


# ---------------------------------------------------------------------------------------
# Family: multi-step arithmetic word problems

def gen_arithmetic_word(rng: random.Random, difficulty: str) -> Problem:
    name = rng.choice(NAMES)
    one, many, kinds = rng.choice(CONTAINERS)
    item = rng.choice(kinds)
    b, k = rng.randint(2, 12), rng.randint(3, 24)
    t = b * k
    setup = f"{name} has {b} {many} of {item}, and each {one} holds {k} {item}."
    total_step = ("compute", f"Each {one} holds {k} {item}, so {b} {many} hold "
                  f"{b} * {k} = {t} {item}.")
    if difficulty == "easy" and rng.random() < 0.5:
        start, gain = rng.randint(5, 80), rng.randint(3, 60)
        lose = rng.randint(1, start + gain - 1)
        mid, end = start + gain, start + gain - lose
        prompt = (f"{name} has {start} {item}. {name} gets {gain} more and then gives away "
                  f"{lose}. How many {item} does {name} have now?")
        steps = [("parse", f"{name} starts with {start} {item}, gains {gain} and gives "
                  f"away {lose}."),
                 ("compute", f"After gaining {gain}: {start} + {gain} = {mid} {item}."),
                 ("compute", f"After giving away {lose}: {mid} - {lose} = {end} {item}."),
                 conclude(str(end))]
        return Problem(prompt, steps, str(end),
                       {"template": "add_remove", "start": start, "gain": gain, "lose": lose})
    if difficulty == "easy":
        prompt = f"{setup} How many {item} does {name} have in total?"
        steps = [("parse", f"There are {b} {many} with {k} {item} in each."), total_step,
                 ("check", f"Splitting back, {t} / {k} = {b} {many}, which matches."),
                 conclude(str(t))]
        return Problem(prompt, steps, str(t), {"template": "total", "b": b, "k": k})
    if difficulty == "medium" and rng.random() < 0.5:
        s = rng.randint(1, t - 1)
        left = t - s
        prompt = f"{setup} {name} gives away {s} {item}. How many {item} are left?"
        steps = [("parse", f"There are {b} {many} of {k} {item}, and {s} are given away."),
                 total_step,
                 ("compute", f"Giving away {s} leaves {t} - {s} = {left} {item}."),
                 conclude(str(left))]
        return Problem(prompt, steps, str(left), {"template": "sell", "b": b, "k": k, "s": s})
    if difficulty == "medium":
        g = rng.choice([d for d in range(2, 10) if t % d == 0 and d != b] or [1])
        if g == 1:
            return gen_arithmetic_word(rng, difficulty)
        q = t // g
        prompt = (f"{setup} {name} shares all the {item} equally among {g} friends. "
                  f"How many {item} does each friend get?")
        steps = [("parse", f"There are {b} {many} of {k} {item}, shared by {g} friends."),
                 total_step,
                 ("compute", f"Sharing {t} {item} among {g} friends gives {t} / {g} = {q} each."),
                 ("check", f"{g} * {q} = {t}, so nothing is left over."),
                 conclude(str(q))]
        return Problem(prompt, steps, str(q), {"template": "share", "b": b, "k": k, "g": g})
    if rng.random() < 0.5:
        c, m = rng.randint(2, 9), rng.randint(2, 15)
        u = c * m
        s = rng.randint(1, t + u - 1)
        left = t + u - s
        prompt = (f"{setup} {name} also has {c} bags with {m} {item} each, and then gives "
                  f"away {s} {item}. How many {item} does {name} have left?")
        steps = [total_step,
                 ("compute", f"The bags hold {c} * {m} = {u} {item}."),
                 ("compute", f"Together that is {t} + {u} = {t + u} {item}."),
                 ("compute", f"After giving away {s}: {t + u} - {s} = {left} {item}."),
                 conclude(str(left))]
        params = {"template": "two_groups_sell", "b": b, "k": k, "c": c, "m": m, "s": s}
        return Problem(prompt, steps, str(left), params)
    g = rng.randint(2, 6)
    if t <= g:
        return gen_arithmetic_word(rng, difficulty)
    q = rng.randint(1, (t - 1) // g)
    s = t - g * q
    prompt = (f"{setup} {name} gives away {s} {item} and shares the rest equally among "
              f"{g} friends. How many {item} does each friend get?")
    steps = [total_step,
             ("compute", f"After giving away {s}: {t} - {s} = {t - s} {item}."),
             ("compute", f"Shared among {g} friends: {t - s} / {g} = {q} each."),
             ("check", f"{g} * {q} + {s} = {t}, which matches the total."),
             conclude(str(q))]
    params = {"template": "sell_then_share", "b": b, "k": k, "s": s, "g": g}
    return Problem(prompt, steps, str(q), params)


# ---------------------------------------------------------------------------------------
# Family: metric unit conversion

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
UNIT_PAIRS = [(big, small) for big in UNITS for small in UNITS
              if UNITS[big][0] == UNITS[small][0] and UNITS[big][1] > UNITS[small][1]
              and UNITS[big][1] // UNITS[small][1] <= 100_000]
ADJACENT_PAIRS = [("km", "m"), ("m", "cm"), ("cm", "mm"), ("kg", "g"), ("g", "mg"),
                  ("h", "min"), ("min", "s"), ("L", "mL")]
CHAINS = [("km", "m", "cm"), ("m", "cm", "mm"), ("kg", "g", "mg"), ("h", "min", "s")]


def ratio(big: str, small: str) -> int:
    return UNITS[big][1] // UNITS[small][1]


def word(unit: str, value: int | Fraction) -> str:
    return UNITS[unit][2] if value == 1 else UNITS[unit][3]


def gen_unit_conversion(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "easy":
        big, small = rng.choice(UNIT_PAIRS)
        r = ratio(big, small)
        value = Fraction(rng.randint(2, 25))
        if rng.random() < 0.3:
            value += Fraction(1, 2)
        answer = value * r
        prompt = rng.choice([
            f"Convert {fmt(value)} {word(big, value)} to {UNITS[small][3]}.",
            f"How many {UNITS[small][3]} are in {fmt(value)} {word(big, value)}?"])
        steps = [("parse", f"Going from {UNITS[big][3]} to the smaller {UNITS[small][3]}, "
                  "so the number gets bigger."),
                 ("convert", f"1 {UNITS[big][2]} = {r} {UNITS[small][3]}."),
                 ("compute", f"{fmt(value)} * {r} = {fmt(answer)}, so {fmt(value)} "
                  f"{word(big, value)} = {fmt(answer)} {word(small, answer)}."),
                 ("check", f"Going back, {fmt(answer)} / {r} = {fmt(value)}."),
                 conclude(fmt(answer))]
        params = {"quantities": [[fmt(value), big]], "to": small}
        return Problem(prompt, steps, fmt(answer), params)
    if difficulty == "medium":
        big, small = rng.choice(UNIT_PAIRS)
        r = ratio(big, small)
        den = rng.choice([d for d in (1, 2, 4, 5, 10, 20, 100) if r % d == 0])
        answer = Fraction(rng.randint(1, 20 * den), den)
        value = answer * r
        prompt = rng.choice([
            f"Convert {fmt(value)} {word(small, value)} to {UNITS[big][3]}.",
            f"How many {UNITS[big][3]} is {fmt(value)} {word(small, value)}?"])
        steps = [("parse", f"Going from {UNITS[small][3]} to the larger {UNITS[big][3]}, "
                  "so the number gets smaller."),
                 ("convert", f"1 {UNITS[big][2]} = {r} {UNITS[small][3]}, so divide by {r}."),
                 ("compute", f"{fmt(value)} / {r} = {fmt(answer)}."),
                 ("check", f"Going back, {fmt(answer)} * {r} = {fmt(value)}."),
                 conclude(fmt(answer))]
        params = {"quantities": [[fmt(value), small]], "to": big}
        return Problem(prompt, steps, fmt(answer), params)
    if rng.random() < 0.5:
        big, small = rng.choice(ADJACENT_PAIRS)
        r = ratio(big, small)
        whole, part = rng.randint(1, 12), rng.randint(1, r - 1)
        converted = whole * r
        answer = converted + part
        prompt = (f"What is {whole} {word(big, whole)} and {part} {word(small, part)} "
                  f"in {UNITS[small][3]}?")
        steps = [("convert", f"1 {UNITS[big][2]} = {r} {UNITS[small][3]}, so {whole} "
                  f"{word(big, whole)} = {whole} * {r} = {converted} {UNITS[small][3]}."),
                 ("compute", f"Adding the {part}: {converted} + {part} = {answer}."),
                 ("check", f"{answer} is between {converted} and {converted + r}, as "
                  f"expected for {whole} {word(big, whole)} and a bit."),
                 conclude(str(answer))]
        params = {"quantities": [[str(whole), big], [str(part), small]], "to": small}
        return Problem(prompt, steps, str(answer), params)
    big, mid, small = rng.choice(CHAINS)
    value = Fraction(rng.randint(1, 9)) + rng.choice([0, Fraction(1, 2), Fraction(1, 4)])
    r1, r2 = ratio(big, mid), ratio(mid, small)
    in_mid = value * r1
    answer = in_mid * r2
    prompt = f"Convert {fmt(value)} {word(big, value)} to {UNITS[small][3]}."
    steps = [("convert", f"1 {UNITS[big][2]} = {r1} {UNITS[mid][3]}, so {fmt(value)} "
              f"{word(big, value)} = {fmt(value)} * {r1} = {fmt(in_mid)} {UNITS[mid][3]}."),
             ("convert", f"1 {UNITS[mid][2]} = {r2} {UNITS[small][3]}, so {fmt(in_mid)} "
              f"{UNITS[mid][3]} = {fmt(in_mid)} * {r2} = {fmt(answer)} {UNITS[small][3]}."),
             conclude(fmt(answer))]
    params = {"quantities": [[fmt(value), big]], "to": small}
    return Problem(prompt, steps, fmt(answer), params)


# ---------------------------------------------------------------------------------------
# Family: percentages

GOODS = ["jacket", "lamp", "bicycle", "backpack", "chair", "kettle", "watch", "tent",
         "blender", "helmet", "camera", "desk", "guitar", "printer", "sofa", "scooter"]
PERCENTS = [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 60, 75, 80]


def gen_percentage(rng: random.Random, difficulty: str) -> Problem:
    p = rng.choice(PERCENTS)
    n = 20 * rng.randint(1, 25)
    part = Fraction(n * p, 100)
    if difficulty == "easy":
        prompt = f"What is {p}% of {n}?"
        steps = [("convert", f"{p}% means {p} out of 100, so multiply by {p}/100."),
                 ("compute", f"{n} * {p} / 100 = {n * p} / 100 = {fmt(part)}."),
                 ("check", f"10% of {n} is {fmt(Fraction(n, 10))}, and {p}% is {p}/10 of that: "
                  f"{fmt(Fraction(n, 10))} * {fmt(Fraction(p, 10))} = {fmt(part)}."),
                 conclude(fmt(part))]
        return Problem(prompt, steps, fmt(part), {"kind": "of", "base": n, "p": p})
    item = rng.choice(GOODS)
    if difficulty == "medium":
        kind = rng.choice(["discount", "increase"])
        sign = -1 if kind == "discount" else 1
        new = n + sign * part
        if kind == "discount":
            prompt = (f"A {item} costs ${n}. It is on sale for {p}% off. What is the sale "
                      "price in dollars?")
            change = ("compute", f"The discount is {p}% of {n}: {n} * {p} / 100 = {fmt(part)}.")
            apply = ("compute", f"The sale price is {n} - {fmt(part)} = {fmt(new)}.")
        else:
            prompt = (f"A {item} costs ${n}. The price goes up by {p}%. What is the new "
                      "price in dollars?")
            change = ("compute", f"The increase is {p}% of {n}: {n} * {p} / 100 = {fmt(part)}.")
            apply = ("compute", f"The new price is {n} + {fmt(part)} = {fmt(new)}.")
        keep = 100 + sign * p
        steps = [change, apply,
                 ("check", f"That is {keep}% of {n}: {n} * {keep} / 100 = {fmt(new)}."),
                 conclude(fmt(new))]
        return Problem(prompt, steps, fmt(new), {"kind": kind, "base": n, "p": p})
    q = rng.choice(PERCENTS)
    if rng.random() < 0.5:
        kind, s1, s2 = "discount_then_discount", -1, -1
    else:
        kind, s1, s2 = "increase_then_decrease", 1, -1
    mid = n + s1 * part
    part2 = mid * q / 100
    final = mid + s2 * part2
    op1, op2 = ("-" if s1 < 0 else "+"), "-"
    if kind == "discount_then_discount":
        prompt = (f"A {item} costs ${n}. It is discounted by {p}%, and then the new price is "
                  f"discounted by another {q}%. What is the final price in dollars?")
    else:
        prompt = (f"A {item} costs ${n}. Its price is raised by {p}% and then lowered by "
                  f"{q}%. What is the final price in dollars?")
    steps = [("compute", f"First change: {p}% of {n} is {fmt(part)}, so the price becomes "
              f"{n} {op1} {fmt(part)} = {fmt(mid)}."),
             ("compute", f"Second change: {q}% of {fmt(mid)} is {fmt(mid)} * {q} / 100 = "
              f"{fmt(part2)}."),
             ("compute", f"The final price is {fmt(mid)} {op2} {fmt(part2)} = {fmt(final)}."),
             ("check", f"The second {q}% applies to {fmt(mid)}, not to the original {n}, "
              f"so the changes do not simply add up."),
             conclude(fmt(final))]
    return Problem(prompt, steps, fmt(final), {"kind": kind, "base": n, "p": p, "q": q})


# ---------------------------------------------------------------------------------------
# Family: string reversal

def gen_string_reversal(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "hard":
        first, second = rng.sample(SHORT_WORDS, 2)
        text = f"{first} {second}"
        answer = text[::-1]
        prompt = rng.choice([f"Reverse the string '{text}' character by character.",
                             f"Write '{text}' backwards, letter by letter."])
        steps = [("parse", f"The string has two words, '{first}' and '{second}', "
                  f"separated by a space."),
                 ("compute", "Reversing the whole string reverses the word order and the "
                  "letters inside each word."),
                 ("compute", f"'{second}' becomes '{second[::-1]}' and '{first}' becomes "
                  f"'{first[::-1]}'."),
                 ("compute", f"In reverse order with the space between: '{answer}'."),
                 conclude(answer)]
        return Problem(prompt, steps, answer, {"text": text})
    text = rng.choice(SHORT_WORDS if difficulty == "easy" else LONG_WORDS)
    answer = text[::-1]
    prompt = rng.choice([f"Reverse the string '{text}'.", f"Write '{text}' backwards.",
                         f"What is '{text}' spelled backwards?"])
    steps = [("parse", f"The word '{text}' has {len(text)} letters: {', '.join(text)}."),
             ("compute", f"Reading them from last to first: {', '.join(answer)}."),
             ("check", f"The result also has {len(answer)} letters and starts with "
              f"'{text[-1]}', the last letter of '{text}'."),
             conclude(answer)]
    return Problem(prompt, steps, answer, {"text": text})


# ---------------------------------------------------------------------------------------
# Family: sorting numbers or letters

def gen_sorting(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "hard" and rng.random() < 0.5:
        text = rng.choice(LONG_WORDS)
        answer = "".join(sorted(text))
        prompt = f"Sort the letters of '{text}' in alphabetical order."
        steps = [("parse", f"The letters of '{text}' are {', '.join(text)}."),
                 ("compute", f"In alphabetical order: {', '.join(answer)}."),
                 ("check", f"Both lists have {len(text)} letters; '{answer[0]}' comes first "
                  f"and '{answer[-1]}' comes last in the alphabet."),
                 conclude(answer)]
        return Problem(prompt, steps, answer,
                       {"kind": "letters", "word": text, "order": "ascending"})
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
    steps = [("parse", f"There are {count} numbers: {listed}."),
             ("compare", f"The smallest is {min(items)} and the largest is {max(items)}."),
             steps_order,
             ("check", f"The sorted list still has {count} numbers, each used once."),
             conclude(answer)]
    return Problem(prompt, steps, answer, {"kind": "numbers", "items": items, "order": order})


# ---------------------------------------------------------------------------------------
# Family: counting

def gen_counting(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "easy":
        text = rng.choice(SHORT_WORDS + LONG_WORDS)
        positions = ", ".join(f"{c}({i})" for i, c in enumerate(text, start=1))
        prompt = rng.choice([f"How many letters are in the word '{text}'?",
                             f"Count the letters in '{text}'."])
        steps = [("parse", f"Number each letter of '{text}': {positions}."),
                 ("compute", f"The last letter is number {len(text)}, so there are "
                  f"{len(text)} letters."),
                 ("check", f"Counting again from the end: {', '.join(reversed(text))} is "
                  f"{len(text)} letters too."),
                 conclude(str(len(text)))]
        return Problem(prompt, steps, str(len(text)), {"kind": "length", "text": text})
    if difficulty == "medium":
        text = rng.choice(LONG_WORDS)
        if rng.random() < 0.85:
            letter = rng.choice(text)
        else:
            letter = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c not in text])
        hits = [i for i, c in enumerate(text, start=1) if c == letter]
        prompt = f"How many times does the letter '{letter}' appear in '{text}'?"
        steps = [("parse", f"Go through '{text}' letter by letter: {', '.join(text)}.")]
        if hits:
            where = join_and([str(i) for i in hits])
            steps.append(("compute", f"'{letter}' is at position{'s' if len(hits) > 1 else ''} "
                          f"{where}."))
            steps.append(("compute", f"That is {len(hits)} time{'s' if len(hits) > 1 else ''}."))
            steps.append(("check", f"The other {len(text) - len(hits)} letters are not "
                          f"'{letter}', and {len(hits)} + {len(text) - len(hits)} = {len(text)}, "
                          f"the length of '{text}'."))
        else:
            steps.append(("compute", f"None of the letters is '{letter}', so it appears 0 times."))
        steps.append(conclude(str(len(hits))))
        params = {"kind": "letter", "text": text, "letter": letter}
        return Problem(prompt, steps, str(len(hits)), params)
    items = [rng.randint(1, 60) for _ in range(rng.randint(6, 9))]
    listed = ", ".join(str(x) for x in items)
    if rng.random() < 0.5:
        kind, label, threshold = "even", "even", None
        hits = [x for x in items if x % 2 == 0]
        prompt = f"How many of these numbers are even: {listed}?"
        rest = "odd"
    else:
        kind, threshold = "greater", rng.randint(15, 45)
        label = f"greater than {threshold}"
        hits = [x for x in items if x > threshold]
        prompt = f"How many of these numbers are greater than {threshold}: {listed}?"
        rest = f"not greater than {threshold}"
    misses = [x for x in items if x not in hits]
    found = ", ".join(str(x) for x in hits) if hits else "none"
    steps = [("parse", f"The list has {len(items)} numbers: {listed}."),
             ("compute", f"The {label} ones are: {found}."),
             ("compute", f"That makes {len(hits)}."),
             ("check", f"The other {len(misses)} are {rest}, and {len(hits)} + {len(misses)} "
              f"= {len(items)}."),
             conclude(str(len(hits)))]
    params: dict[str, Any] = {"kind": kind, "items": items}
    if threshold is not None:
        params["threshold"] = threshold
    return Problem(prompt, steps, str(len(hits)), params)


# ---------------------------------------------------------------------------------------
# Family: number sequences

def gen_sequence(rng: random.Random, difficulty: str) -> Problem:
    geometric_share = {"easy": 0.0, "medium": 0.3, "hard": 0.5}[difficulty]
    kind = "geometric" if rng.random() < geometric_share else "arithmetic"
    if kind == "arithmetic":
        if difficulty == "easy":
            start, d = rng.randint(1, 30), rng.randint(2, 12)
        elif difficulty == "medium":
            start, d = rng.randint(40, 99), -rng.randint(2, 9)
        else:
            start, d = rng.randint(-10, 30), rng.choice([-1, 1]) * rng.randint(2, 12)
        terms = [start + d * i for i in range(4)]
        position = 5 if difficulty != "hard" else rng.randint(8, 15)
        answer = start + (position - 1) * d
        listed = ", ".join(str(t) for t in terms)
        diffs = ", ".join(f"{b} - {paren(a)} = {b - a}" for a, b in pairwise(terms))
        steps = [("parse", f"The terms are {listed}."),
                 ("compute", f"Differences: {diffs}. The difference is always {d}.")]
        if position == 5:
            prompt = f"What is the next number in the sequence {listed}, ...?"
            steps.append(("compute", f"Next term: {terms[-1]} + {paren(d)} = {answer}."))
        else:
            prompt = f"In the sequence {listed}, ..., what is term number {position}?"
            steps.append(("compute", f"Term n is {start} + (n - 1) * {paren(d)}, so term "
                          f"{position} is {start} + {position - 1} * {paren(d)} = {answer}."))
            steps.append(("check", f"For n = 4 the rule gives {start} + 3 * {paren(d)} = "
                          f"{terms[3]}, which matches."))
        steps.append(conclude(str(answer)))
        params = {"kind": kind, "terms": terms, "position": position}
        return Problem(prompt, steps, str(answer), params)
    if difficulty == "hard" and rng.random() < 0.4:
        r = Fraction(1, 2)
        start = rng.randint(1, 15) * 16
    else:
        r = Fraction(rng.choice([2, 3] if difficulty == "medium" else [2, 3, 4, 5]))
        start = rng.randint(1, 20 if difficulty == "medium" else 12)
    terms = [int(start * r**i) for i in range(4)]
    answer = int(terms[-1] * r)
    listed = ", ".join(str(t) for t in terms)
    ratios = ", ".join(f"{b} / {a} = {fmt(Fraction(b, a))}" for a, b in pairwise(terms))
    if r < 1:
        rule = "Each term is half of the one before."
        nxt = f"Next term: {terms[-1]} / 2 = {answer}."
    else:
        rule = f"Each term is {fmt(r)} times the one before."
        nxt = f"Next term: {terms[-1]} * {fmt(r)} = {answer}."
    steps = [("parse", f"The terms are {listed}."),
             ("compute", f"Ratios: {ratios}. {rule}"),
             ("compute", nxt),
             conclude(str(answer))]
    prompt = f"What is the next number in the sequence {listed}, ...?"
    params = {"kind": kind, "terms": terms, "ratio": str(r), "position": 5}
    return Problem(prompt, steps, str(answer), params)


# ---------------------------------------------------------------------------------------
# Family: comparing decimals and fractions

def frac_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def two_places(value: Fraction) -> str:
    hundredths = int(value * 100)
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def gen_comparison(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "easy":
        whole = rng.choice([0, 0, 1, 2, 3])
        a = Fraction(10 * whole + rng.randint(1, 9), 10)
        b = Fraction(100 * whole + rng.randint(1, 99), 100)
        if a == b or b.denominator != 100:
            return gen_comparison(rng, difficulty)
        ask = rng.choice(["larger", "smaller"])
        pick = max(a, b) if ask == "larger" else min(a, b)
        other = b if pick == a else a
        prompt = f"Which is {ask}, {fmt(a)} or {fmt(b)}?"
        a2, b2 = two_places(a), two_places(b)
        rel = ">" if a > b else "<"
        steps = [("parse", f"{fmt(a)} has one decimal place and {fmt(b)} has two, so pad "
                  "them before comparing digits."),
                 ("convert", f"Write both with two decimal places: {a2} and {b2}."),
                 ("compare", f"{int(a * 100)} hundredths vs {int(b * 100)} hundredths, so "
                  f"{a2} {rel} {b2}."),
                 ("compare", f"So {fmt(pick)} is {ask} than {fmt(other)}."),
                 conclude(fmt(pick))]
        return Problem(prompt, steps, fmt(pick), {"values": [fmt(a), fmt(b)], "ask": ask})
    dens = [2, 3, 4, 5, 6, 8, 10, 12]
    count = 2 if difficulty == "medium" else 3
    values: list[Fraction] = []
    while len(values) < count - (difficulty == "hard"):
        den = rng.choice(dens)
        v = Fraction(rng.randint(1, den - 1), den)
        if v not in values:
            values.append(v)
    texts = [frac_text(v) for v in values]
    if difficulty == "hard":
        dec = Fraction(rng.randint(1, 9), 10)
        if dec in values:
            return gen_comparison(rng, difficulty)
        pos = rng.randint(0, len(values))
        values.insert(pos, dec)
        texts.insert(pos, fmt(dec))
    ask = rng.choice(["larger", "smaller"] if count == 2 else ["largest", "smallest"])
    pick = max(values) if ask in ("larger", "largest") else min(values)
    answer = texts[values.index(pick)]
    lcd = math.lcm(*(v.denominator for v in values))
    scaled = [v * lcd for v in values]
    rewrites = ", ".join(f"{t} = {int(s)}/{lcd}" for t, s in zip(texts, scaled, strict=True))
    steps = []
    if difficulty == "hard":
        steps.append(("convert", f"Write the decimal as a fraction: {fmt(dec)} = "
                      f"{dec.numerator}/{dec.denominator}."))
    steps.append(("convert", f"Use the common denominator {lcd}: {rewrites}."))
    ranked = sorted(zip(scaled, texts, strict=True), reverse=True)
    steps.append(("compare", "Comparing numerators: " + " > ".join(
        f"{int(s)} ({t})" for s, t in ranked) + "."))
    if count == 2:
        prompt = f"Which is {ask}, {texts[0]} or {texts[1]}?"
        a, b = values
        steps.append(("check", f"Cross-multiplying: {a.numerator} * {b.denominator} = "
                      f"{a.numerator * b.denominator} and {b.numerator} * {a.denominator} = "
                      f"{b.numerator * a.denominator}, which agrees."))
    else:
        prompt = f"Which is the {ask}: {texts[0]}, {texts[1]} or {texts[2]}?"
        steps.append(("compare", f"So the {ask} is {answer}."))
    steps.append(conclude(answer))
    return Problem(prompt, steps, answer, {"values": texts, "ask": ask})


# ---------------------------------------------------------------------------------------
# Family: logic (boolean expressions, syllogisms)

OP_RULES = {"AND": "AND is true only when both sides are true.",
            "OR": "OR is true when at least one side is true.",
            "NOT": "NOT flips true and false."}
VARIABLES = ["A", "B", "C", "P", "Q", "R", "S", "T"]
Expr = tuple[Any, ...]  # ("var", name) | ("not", e) | ("and"|"or", left, right)


def render_expr(expr: Expr, top: bool = True) -> str:
    if expr[0] == "var":
        return expr[1]
    if expr[0] == "not":
        return f"NOT {render_expr(expr[1], top=False)}"
    text = f"{render_expr(expr[1], False)} {expr[0].upper()} {render_expr(expr[2], False)}"
    return text if top else f"({text})"


def eval_expr(expr: Expr, env: dict[str, bool], steps: list[tuple[str, str]]) -> bool:
    """Evaluate bottom-up, appending one step per operator."""
    tf = {True: "true", False: "false"}
    if expr[0] == "var":
        return env[expr[1]]
    if expr[0] == "not":
        inner = eval_expr(expr[1], env, steps)
        steps.append(("compute", f"{render_expr(expr)} = NOT {tf[inner]} = {tf[not inner]}."))
        return not inner
    left = eval_expr(expr[1], env, steps)
    right = eval_expr(expr[2], env, steps)
    value = (left and right) if expr[0] == "and" else (left or right)
    steps.append(("compute", f"{render_expr(expr)} = {tf[left]} {expr[0].upper()} "
                  f"{tf[right]} = {tf[value]}."))
    return value


def random_expr(rng: random.Random, names: list[str], ops: int, negate: bool) -> Expr:
    expr: Expr = ("var", names[0])
    for name in names[1:ops + 1]:
        leaf: Expr = ("var", name)
        op = rng.choice(["and", "or"])
        expr = (op, expr, leaf) if rng.random() < 0.5 else (op, leaf, expr)
    if negate:
        # Negate one operand of the top operator, or the whole expression.
        where = rng.choice([1, 2, 0])
        if where == 0:
            expr = ("not", expr)
        else:
            parts = list(expr)
            parts[where] = ("not", parts[where])
            expr = tuple(parts)
    return expr


SYLLOGISMS = {
    # form: (premises, question, answer, reasoning); X, Y, Z are filled with nonsense nouns.
    "barbara": ("All {Xs} are {Ys}. All {Ys} are {Zs}.", "Is every {X} a {Z}?", "yes",
                "Every {X} is a {Y}, and every {Y} is a {Z}, so every {X} is a {Z}."),
    "darii": ("All {Ys} are {Zs}. Some {Xs} are {Ys}.", "Must some {Xs} be {Zs}?", "yes",
              "The {Xs} that are {Ys} are also {Zs}, because all {Ys} are {Zs}."),
    "celarent": ("All {Xs} are {Ys}. No {Ys} are {Zs}.", "Can a {X} be a {Z}?", "no",
                 "A {X} is always a {Y}, and no {Y} is a {Z}, so no {X} is a {Z}."),
    "undistributed": ("All {Xs} are {Ys}. All {Zs} are {Ys}.", "Must every {X} be a {Z}?",
                      "no", "Both groups are inside the {Ys}, but that does not put the "
                      "{Xs} inside the {Zs}; a {X} can be a {Y} that is not a {Z}."),
    "converse": ("All {Xs} are {Ys}.", "Must every {Y} be a {X}?", "no",
                 "The statement only says where the {Xs} are; there can be {Ys} that are "
                 "not {Xs}."),
}


def gen_logic(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "hard" and rng.random() < 0.5:
        form = rng.choice(sorted(SYLLOGISMS))
        (x, xs), (y, ys), (z, zs) = rng.sample(NONSENSE, 3)
        names = {"X": x, "Xs": xs, "Y": y, "Ys": ys, "Z": z, "Zs": zs}
        premises, question, answer, why = (s.format(**names) for s in SYLLOGISMS[form])
        prompt = f"{premises} {question} Answer yes or no."
        steps = [("parse", f"Premises: {premises}"),
                 ("compute", why),
                 ("check", "Only the premises count, since the words are made up."),
                 conclude(answer)]
        params = {"kind": "syllogism", "form": form, "terms": [x, y, z]}
        return Problem(prompt, steps, answer, params)
    ops = {"easy": 1, "medium": 2, "hard": 2}[difficulty]
    names = rng.sample(VARIABLES, ops + 1)
    env = {name: rng.random() < 0.5 for name in names}
    expr = random_expr(rng, names, ops, negate=difficulty == "hard")
    text = render_expr(expr)
    facts = join_and([f"{n} is {'true' if env[n] else 'false'}" for n in names])
    prompt = f"Suppose {facts}. Is {text} true or false?"
    steps: list[tuple[str, str]] = [("parse", f"Given: {facts}.")]
    used = [op for op in ("AND", "OR", "NOT") if op in text.split()]
    steps.append(("parse", "Rules: " + " ".join(OP_RULES[op] for op in used)))
    value = eval_expr(expr, env, steps)
    answer = "true" if value else "false"
    steps.append(conclude(answer))
    params = {"kind": "boolean", "expression": text, "values": env}
    return Problem(prompt, steps, answer, params)


# ---------------------------------------------------------------------------------------
# Family: calendar dates

def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def month_days(year: int, month: int) -> int:
    if month == 2:
        return 29 if is_leap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def leap_reason(year: int) -> str:
    if year % 400 == 0:
        why = f"{year} is divisible by 400, so it is a leap year"
    elif year % 100 == 0:
        why = f"{year} is divisible by 100 but not by 400, so it is not a leap year"
    elif year % 4 == 0:
        why = f"{year} is divisible by 4 and not by 100, so it is a leap year"
    else:
        why = f"{year} is not divisible by 4, so it is not a leap year"
    return f"{why} and February {year} has {month_days(year, 2)} days."


def iso(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}"


def date_steps(year: int, month: int, day: int, n: int) -> tuple[list[tuple[str, str]], str]:
    steps: list[tuple[str, str]] = []
    left = n
    while True:
        if month == 2:
            steps.append(("convert", leap_reason(year)))
        length = month_days(year, month)
        if day + left <= length:
            end = iso(year, month, day + left)
            if left:
                steps.append(("compute", f"{day} + {left} = {day + left}, which fits in "
                              f"{MONTHS[month - 1]} ({length} days), so the date is {end}."))
            return steps, end
        jump = length - day + 1
        name = MONTHS[month - 1]
        year, month, day = (year + 1, 1, 1) if month == 12 else (year, month + 1, 1)
        left -= jump
        reached = iso(year, month, day)
        if not left:
            steps.append(("compute", f"{name} has {length} days, so {jump} days reach "
                          f"{reached}, which uses up all the days."))
            return steps, reached
        steps.append(("compute", f"{name} has {length} days, so {jump} days reach {reached}, "
                      f"leaving {left} days."))


def gen_date_arithmetic(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "hard":
        year = rng.choice([1900, 2000, 2100, 2020, 2023, 2024, 2025, 2028, 1996, 1999, 2004])
        month = rng.choice([1, 2, 2, 12])
        n = rng.randint(20, 75)
    else:
        year, month = rng.randint(1990, 2035), rng.randint(1, 12)
        n = rng.randint(2, 25) if difficulty == "easy" else rng.randint(26, 70)
    day = rng.randint(1, month_days(year, month))
    steps, answer = date_steps(year, month, day, n)
    start = iso(year, month, day)
    written = rng.choice([start, f"{MONTHS[month - 1]} {day}, {year}"])
    prompt = rng.choice([f"What date is {n} days after {written}? Answer as YYYY-MM-DD.",
                         f"Add {n} days to {written}. Give the date as YYYY-MM-DD."])
    steps.insert(0, ("parse", f"Start from {start} and add {n} days."))
    steps.append(("check", f"Counting back {n} days from {answer} returns to {start}."))
    steps.append(conclude(answer))
    return Problem(prompt, steps, answer, {"start": start, "days": n})


# ---------------------------------------------------------------------------------------
# Family: clock times

def hhmm(total_minutes: int) -> str:
    return f"{total_minutes // 60 % 24:02d}:{total_minutes % 60:02d}"


def gen_clock_time(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "easy":
        start, n = rng.randint(0, 22 * 12) * 5, rng.randint(5, 59)
    elif difficulty == "medium":
        start, n = rng.randint(12, 18 * 12) * 5, rng.randint(61, 300)
    else:
        start, n = rng.randint(19 * 12, 24 * 12 - 1) * 5, rng.randint(90, 600)
    hours, minutes = divmod(n, 60)
    end = start + n
    t0, t1 = hhmm(start), hhmm(end)
    prompt = rng.choice([
        f"What time is it {n} minutes after {t0}? Use the 24-hour clock.",
        f"A movie starts at {t0} and lasts {n} minutes. At what time does it end "
        "(24-hour clock)?",
        f"A train leaves at {t0} and the trip takes {n} minutes. When does it arrive "
        "(24-hour clock)?"])
    steps: list[tuple[str, str]] = [("parse", f"Start at {t0} and add {n} minutes.")]
    mid = start
    if hours:
        steps.append(("convert", f"{n} minutes = {hours} hour{'s' if hours > 1 else ''} "
                      f"and {minutes} minutes."))
        mid = start + 60 * hours
        wrap = " (past midnight)" if mid >= 24 * 60 else ""
        steps.append(("compute", f"{t0} + {hours} h = {hhmm(mid)}{wrap}."))
    if minutes:
        total = mid % 60 + minutes
        if total >= 60:
            wrap = " (past midnight)" if end // (24 * 60) > mid // (24 * 60) else ""
            steps.append(("compute", f"{hhmm(mid)} + {minutes} min: {mid % 60} + {minutes} = "
                          f"{total} minutes = 1 hour {total - 60} minutes, so {t1}{wrap}."))
        else:
            steps.append(("compute", f"{hhmm(mid)} + {minutes} min: {mid % 60} + {minutes} = "
                          f"{total}, so {t1}."))
    span = f"{hours} h {minutes} min = {n} minutes" if hours else f"{n} minutes"
    steps.append(("check", f"From {t0} to {t1} is {span}."))
    steps.append(conclude(t1))
    return Problem(prompt, steps, t1, {"start": t0, "minutes": n})


# ---------------------------------------------------------------------------------------
# Family: greatest common divisor and least common multiple

def euclid_steps(a: int, b: int) -> tuple[list[tuple[str, str]], int]:
    steps = []
    a, b = max(a, b), min(a, b)
    while b:
        q, r = divmod(a, b)
        steps.append(("compute", f"{a} = {q} * {b} + {r}."))
        a, b = b, r
    return steps, a


def gen_gcd_lcm(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "hard" and rng.random() < 0.5:
        nums = rng.sample(range(2, 16), 3)
        l1 = math.lcm(nums[0], nums[1])
        ans = math.lcm(l1, nums[2])
        g1, g2 = math.gcd(nums[0], nums[1]), math.gcd(l1, nums[2])
        prompt = f"What is the least common multiple of {nums[0]}, {nums[1]} and {nums[2]}?"
        steps = [("compute", f"gcd({nums[0]}, {nums[1]}) = {g1}, so lcm({nums[0]}, {nums[1]}) "
                  f"= {nums[0]} * {nums[1]} / {g1} = {l1}."),
                 ("compute", f"gcd({l1}, {nums[2]}) = {g2}, so lcm({l1}, {nums[2]}) = "
                  f"{l1} * {nums[2]} / {g2} = {ans}."),
                 ("check", f"{ans} / {nums[0]} = {ans // nums[0]}, {ans} / {nums[1]} = "
                  f"{ans // nums[1]}, {ans} / {nums[2]} = {ans // nums[2]}: all whole."),
                 conclude(str(ans))]
        return Problem(prompt, steps, str(ans), {"op": "lcm", "numbers": nums})
    if difficulty == "medium":
        a, b = rng.sample(range(2, 25), 2)
        euclid, g = euclid_steps(a, b)
        ans = a * b // g
        prompt = f"What is the least common multiple of {a} and {b}?"
        steps = [("parse", f"Use lcm({a}, {b}) = {a} * {b} / gcd({a}, {b})."), *euclid,
                 ("compute", f"gcd = {g}, so lcm = {a * b} / {g} = {ans}."),
                 ("check", f"{ans} / {a} = {ans // a} and {ans} / {b} = {ans // b}."),
                 conclude(str(ans))]
        if len(euclid) > 4:
            return gen_gcd_lcm(rng, difficulty)
        return Problem(prompt, steps, str(ans), {"op": "lcm", "numbers": [a, b]})
    top = 12 if difficulty == "easy" else 40
    g0 = rng.randint(2, top)
    limit = 60 if difficulty == "easy" else 400
    mults = rng.sample(range(1, max(3, limit // g0 + 1)), 2)
    a, b = g0 * mults[0], g0 * mults[1]
    euclid, g = euclid_steps(a, b)
    if len(euclid) > 5 or a == b:
        return gen_gcd_lcm(rng, difficulty)
    prompt = rng.choice([f"What is the greatest common divisor of {a} and {b}?",
                         f"Find gcd({a}, {b})."])
    steps = [("parse", "Use the Euclidean algorithm: divide and keep the remainder."), *euclid,
             ("compute", f"The last nonzero remainder is {g}, so gcd({a}, {b}) = {g}."),
             ("check", f"{a} / {g} = {a // g} and {b} / {g} = {b // g}."),
             conclude(str(g))]
    return Problem(prompt, steps, str(g), {"op": "gcd", "numbers": [a, b]})


# ---------------------------------------------------------------------------------------
# Family: parity and divisibility rules

def divisibility_rule(n: int, d: int) -> list[tuple[str, str]]:
    digits = [int(c) for c in str(n)]
    s = sum(digits)
    if d in (3, 9):
        verdict = "is" if s % d == 0 else "is not"
        return [("compute", f"Digit sum: {' + '.join(map(str, digits))} = {s}."),
                ("compare", f"{s} {verdict} divisible by {d}, and a number is divisible by "
                 f"{d} exactly when its digit sum is.")]
    if d in (5, 10):
        ok = "0 or 5" if d == 5 else "0"
        return [("compare", f"A number is divisible by {d} when its last digit is {ok}; the "
                 f"last digit of {n} is {digits[-1]}.")]
    if d == 4:
        last = n % 100
        verdict = "is" if last % 4 == 0 else "is not"
        return [("compare", f"A number is divisible by 4 when its last two digits are; "
                 f"{last:02d} {verdict} divisible by 4.")]
    if d == 6:
        even = "even" if n % 2 == 0 else "odd"
        verdict = "is" if s % 3 == 0 else "is not"
        return [("compare", f"Divisible by 6 means divisible by both 2 and 3. {n} is {even}."),
                ("compute", f"Digit sum {' + '.join(map(str, digits))} = {s}, which {verdict} "
                 f"divisible by 3.")]
    # d == 11: alternating digit sum from the right
    signed = list(reversed(digits))
    alt = sum(v if i % 2 == 0 else -v for i, v in enumerate(signed))
    terms = " ".join(("" if i == 0 else ("+ " if i % 2 == 0 else "- ")) + str(v)
                     for i, v in enumerate(signed))
    verdict = "is" if alt % 11 == 0 else "is not"
    return [("compute", f"Alternating sum of digits from the right: {terms} = {alt}."),
            ("compare", f"{alt} {verdict} a multiple of 11, and {n} is divisible by 11 "
             f"exactly when that sum is.")]


def gen_divisibility(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "easy":
        n = rng.randint(10, 9999)
        parity = "even" if n % 2 == 0 else "odd"
        last = n % 10
        prompt = rng.choice([f"Is {n} even or odd?", f"Is the number {n} odd or even?"])
        steps = [("parse", f"The last digit of {n} is {last}."),
                 ("compare", f"{last} is {parity}, and a number is {parity} exactly when its "
                  f"last digit is."),
                 ("check", f"{n} = 2 * {n // 2} + {n % 2}, remainder {n % 2}."),
                 conclude(parity)]
        return Problem(prompt, steps, parity, {"number": n, "divisor": 2})
    d = rng.choice([3, 5, 9, 10] if difficulty == "medium" else [4, 6, 11])
    q = rng.randint(100 // d + 1, (9999 if difficulty == "medium" else 99999) // d)
    n = d * q + (0 if rng.random() < 0.5 else rng.randint(1, d - 1))
    answer = "yes" if n % d == 0 else "no"
    prompt = f"Is {n} divisible by {d}? Answer yes or no."
    steps = [*divisibility_rule(n, d),
             ("check", f"{n} = {d} * {n // d} + {n % d}, remainder {n % d}."),
             conclude(answer)]
    return Problem(prompt, steps, answer, {"number": n, "divisor": d})


# ---------------------------------------------------------------------------------------
# Family: linear equations a*x + b = c*x + d

def side(a: int, b: int) -> str:
    """Text of a*x + b, e.g. 3x - 5, x + 4, 7, 2x."""
    xs = "" if a == 0 else ("x" if a == 1 else f"{a}x")
    if not xs:
        return str(b)
    if b == 0:
        return xs
    return f"{xs} {'+' if b > 0 else '-'} {abs(b)}"


def gen_linear_equation(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "easy":
        x = rng.randint(1, 20)
        a, b = (1, rng.randint(1, 30)) if rng.random() < 0.5 else (rng.randint(2, 9), 0)
        c, d = 0, a * x + b
    elif difficulty == "medium":
        x = rng.randint(-10, 15)
        a, b, c = rng.randint(2, 9), rng.choice([-1, 1]) * rng.randint(1, 20), 0
        d = a * x + b
    else:
        x = rng.randint(-10, 15)
        c, k = rng.randint(1, 7), rng.randint(1, 6)
        a, b = c + k, rng.choice([-1, 1]) * rng.randint(1, 20)
        d = a * x + b - c * x
    equation = f"{side(a, b)} = {side(c, d)}"
    prompt = rng.choice([f"Solve for x: {equation}.", f"Find x if {equation}."])
    steps: list[tuple[str, str]] = [("parse", f"The equation is {equation}.")]
    k = a - c
    if c:
        steps.append(("compute", f"Subtract {side(c, 0)} from both sides: {side(k, b)} = {d}."))
    if b > 0:
        steps.append(("compute", f"Subtract {b} from both sides: {side(k, 0)} = {d} - {b} = "
                      f"{d - b}."))
    elif b < 0:
        steps.append(("compute", f"Add {-b} to both sides: {side(k, 0)} = {d} + {-b} = "
                      f"{d - b}."))
    if k != 1:
        steps.append(("compute", f"Divide both sides by {k}: x = {d - b} / {k} = {x}."))
    left, right = a * x + b, c * x + d
    lhs = (f"{a} * {paren(x)}" if a != 1 else paren(x)) + (
        f" {'+' if b > 0 else '-'} {abs(b)}" if b else "")
    rhs = str(d)
    if c:
        rhs = (f"{c} * {paren(x)}" if c != 1 else paren(x)) + (
            f" {'+' if d > 0 else '-'} {abs(d)}" if d else "")
    steps.append(("check", f"Left side: {lhs} = {left}. Right side: {rhs} = {right}. They match."))
    steps.append(conclude(str(x)))
    return Problem(prompt, steps, str(x), {"a": a, "b": b, "c": c, "d": d})


# ---------------------------------------------------------------------------------------
# Splits, files and manifest

FAMILIES: dict[str, Callable[[random.Random, str], Problem]] = {
    "arithmetic_word": gen_arithmetic_word,
    "clock_time": gen_clock_time,
    "comparison": gen_comparison,
    "counting": gen_counting,
    "date_arithmetic": gen_date_arithmetic,
    "divisibility": gen_divisibility,
    "gcd_lcm": gen_gcd_lcm,
    "linear_equation": gen_linear_equation,
    "logic": gen_logic,
    "percentage": gen_percentage,
    "sequence": gen_sequence,
    "sorting": gen_sorting,
    "string_reversal": gen_string_reversal,
    "unit_conversion": gen_unit_conversion,
}


def problem_key(family: str, params: dict[str, Any]) -> str:
    return family + ":" + json.dumps(params, sort_keys=True)


def draw_problems(split: str, n: int, seed: int, seen_keys: set[str],
                  seen_prompts: set[str]) -> list[tuple[str, str, Problem]]:
    """n new (family, difficulty, problem); families and difficulties balanced, order shuffled.

    A problem whose parameters or prompt already appeared in an earlier split (or earlier in
    this one) is redrawn, so no eval prompt is a train prompt.
    """
    rng = random.Random(f"{DATASET_KEY}:{seed}:{split}")
    names = list(FAMILIES)
    slots = [(names[i % len(names)], DIFFICULTIES[(i // len(names)) % len(DIFFICULTIES)])
             for i in range(n)]
    rng.shuffle(slots)
    out = []
    for family, difficulty in slots:
        for _ in range(MAX_ATTEMPTS):
            problem = FAMILIES[family](rng, difficulty)
            key = problem_key(family, problem.params)
            if key not in seen_keys and problem.prompt not in seen_prompts:
                break
        else:
            raise RuntimeError(f"{split}: no unseen {difficulty} {family} problem after "
                               f"{MAX_ATTEMPTS} draws; the family's problem space is too small")
        seen_keys.add(key)
        seen_prompts.add(problem.prompt)
        out.append((family, difficulty, problem))
    return out


def trace_record(split: str, index: int, family: str, difficulty: str,
                 problem: Problem) -> dict[str, Any]:
    return {
        "trace_version": TRACE_VERSION,
        "prompt": problem.prompt,
        "steps": [{"i": i, "type": kind, "content": content}
                  for i, (kind, content) in enumerate(problem.steps, start=1)],
        "final_answer": problem.answer,
        "meta": {"family": family, "difficulty": difficulty,
                 "id": f"{split}-{index:05d}", "params": problem.params},
    }


def eval_record(index: int, family: str, difficulty: str, problem: Problem) -> dict[str, Any]:
    return {"id": f"eval-{index:04d}", "prompt": problem.prompt,
            "expected_answer": problem.answer, "category": family,
            "difficulty": difficulty, "section": EVAL_SECTION}


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.write_text(text, encoding="utf-8", newline="\n")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kept_tokenizer_entry(out: Path, files: dict[str, Any]) -> dict[str, Any] | None:
    """The old manifest's tokenizer entry, if it still describes tokenizer.json and was
    trained on the train/valid files just written."""
    manifest, tokenizer = out / "manifest.json", out / "tokenizer.json"
    if not manifest.is_file() or not tokenizer.is_file():
        return None
    entry = json.loads(manifest.read_text(encoding="utf-8")).get("files", {}).get(
        "tokenizer.json")
    if not isinstance(entry, dict) or entry.get("sha256") != sha256(tokenizer):
        return None
    trained_on = {name: files[name]["sha256"] for name in ("train.jsonl", "valid.jsonl")}
    return entry if entry.get("trained_on") == trained_on else None


def build(out: Path, seed: int, n_train: int, n_valid: int, n_eval: int) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    seen_keys: set[str] = set()
    seen_prompts: set[str] = set()
    splits = {name: draw_problems(name, n, seed, seen_keys, seen_prompts)
              for name, n in (("train", n_train), ("valid", n_valid), ("eval", n_eval))}
    for name in ("train", "valid"):
        write_jsonl(out / f"{name}.jsonl", [trace_record(name, i, *row)
                                            for i, row in enumerate(splits[name])])
    write_jsonl(out / "eval.jsonl", [eval_record(i, *row) for i, row in enumerate(splits["eval"])])
    files: dict[str, Any] = {
        f"{name}.jsonl": {"records": len(rows), "sha256": sha256(out / f"{name}.jsonl")}
        for name, rows in splits.items()}
    tokenizer = kept_tokenizer_entry(out, files)
    if tokenizer is not None:
        files["tokenizer.json"] = tokenizer
    manifest = {
        "key": DATASET_KEY,
        "version": DATASET_VERSION,
        "schema_version": SCHEMA_VERSION,
        "generator": GENERATOR,
        "seed": seed,
        "files": files,
        "composition": {name: dict(sorted(Counter(f for f, _, _ in rows).items()))
                        for name, rows in splits.items()},
    }
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    (out / "manifest.json").write_text(text, encoding="utf-8", newline="\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "datasets" / "dev-reasoning")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--train", type=int, default=2400)
    parser.add_argument("--valid", type=int, default=200)
    parser.add_argument("--eval", type=int, default=360)
    args = parser.parse_args(argv)
    manifest = build(args.out, args.seed, args.train, args.valid, args.eval)
    counts = ", ".join(f"{name} {entry['records']}" for name, entry in manifest["files"].items()
                       if "records" in entry)
    print(f"wrote {args.out}: {counts} records, {len(FAMILIES)} families")
    if "tokenizer.json" not in manifest["files"]:
        print("tokenizer.json is missing or stale: run scripts/train_tokenizer.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
