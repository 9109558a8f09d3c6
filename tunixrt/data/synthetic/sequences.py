"""Family: arithmetic and geometric number sequences (next term or n-th term)."""

from __future__ import annotations

import random
from fractions import Fraction
from itertools import pairwise

from tunixrt.data.synthetic.common import Problem, Step, conclude, fmt, paren


def gen_sequence(rng: random.Random, difficulty: str) -> Problem:
    geometric_share = {"easy": 0.0, "medium": 0.3, "hard": 0.5}[difficulty]
    if rng.random() < geometric_share:
        return geometric(rng, difficulty)
    return arithmetic(rng, difficulty)


def arithmetic(rng: random.Random, difficulty: str) -> Problem:
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
    steps: list[Step] = [
        ("parse", f"The terms are {listed}."),
        ("compute", f"Differences: {diffs}. The difference is always {d}."),
    ]
    if position == 5:
        prompt = f"What is the next number in the sequence {listed}, ...?"
        steps.append(("compute", f"Next term: {terms[-1]} + {paren(d)} = {answer}."))
    else:
        prompt = f"In the sequence {listed}, ..., what is term number {position}?"
        steps.append(
            (
                "compute",
                f"Term n is {start} + (n - 1) * {paren(d)}, so term "
                f"{position} is {start} + {position - 1} * {paren(d)} = {answer}.",
            )
        )
        steps.append(
            (
                "check",
                f"For n = 4 the rule gives {start} + 3 * {paren(d)} = {terms[3]}, which matches.",
            )
        )
    steps.append(conclude(str(answer)))
    params = {"kind": "arithmetic", "terms": terms, "position": position}
    return Problem(prompt, steps, str(answer), params)


def geometric(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "hard" and rng.random() < 0.4:
        r = Fraction(1, 2)
        start = rng.randint(1, 15) * 16  # halves stay whole for the four terms and the next
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
    steps = [
        ("parse", f"The terms are {listed}."),
        ("compute", f"Ratios: {ratios}. {rule}"),
        ("compute", nxt),
        conclude(str(answer)),
    ]
    prompt = f"What is the next number in the sequence {listed}, ...?"
    params = {"kind": "geometric", "terms": terms, "ratio": str(r), "position": 5}
    return Problem(prompt, steps, str(answer), params)
