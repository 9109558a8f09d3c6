"""Families: greatest common divisor and least common multiple; parity and divisibility."""

from __future__ import annotations

import math
import random

from tunixrt.data.synthetic.common import Problem, Step, conclude

# ---------------------------------------------------------------------------------------
# gcd and lcm, worked with the Euclidean algorithm


def euclid_steps(a: int, b: int) -> tuple[list[Step], int]:
    """One step per division of the Euclidean algorithm, and the gcd."""
    steps: list[Step] = []
    a, b = max(a, b), min(a, b)
    while b:
        q, r = divmod(a, b)
        steps.append(("compute", f"{a} = {q} * {b} + {r}."))
        a, b = b, r
    return steps, a


def gen_gcd_lcm(rng: random.Random, difficulty: str) -> Problem:
    problem: Problem | None
    if difficulty == "hard" and rng.random() < 0.5:
        problem = lcm_of_three(rng)
    elif difficulty == "medium":
        problem = lcm_of_two(rng)
    else:
        problem = gcd_of_two(rng, difficulty)
    # None: the Euclidean algorithm took too many steps, so draw a whole new problem.
    return problem if problem is not None else gen_gcd_lcm(rng, difficulty)


def lcm_of_three(rng: random.Random) -> Problem:
    nums = rng.sample(range(2, 16), 3)
    l1 = math.lcm(nums[0], nums[1])
    ans = math.lcm(l1, nums[2])
    g1, g2 = math.gcd(nums[0], nums[1]), math.gcd(l1, nums[2])
    prompt = f"What is the least common multiple of {nums[0]}, {nums[1]} and {nums[2]}?"
    steps = [
        (
            "compute",
            f"gcd({nums[0]}, {nums[1]}) = {g1}, so lcm({nums[0]}, {nums[1]}) "
            f"= {nums[0]} * {nums[1]} / {g1} = {l1}.",
        ),
        (
            "compute",
            f"gcd({l1}, {nums[2]}) = {g2}, so lcm({l1}, {nums[2]}) = "
            f"{l1} * {nums[2]} / {g2} = {ans}.",
        ),
        (
            "check",
            f"{ans} / {nums[0]} = {ans // nums[0]}, {ans} / {nums[1]} = "
            f"{ans // nums[1]}, {ans} / {nums[2]} = {ans // nums[2]}: all whole.",
        ),
        conclude(str(ans)),
    ]
    return Problem(prompt, steps, str(ans), {"op": "lcm", "numbers": nums})


def lcm_of_two(rng: random.Random) -> Problem | None:
    a, b = rng.sample(range(2, 25), 2)
    euclid, g = euclid_steps(a, b)
    if len(euclid) > 4:
        return None
    ans = a * b // g
    prompt = f"What is the least common multiple of {a} and {b}?"
    steps = [
        ("parse", f"Use lcm({a}, {b}) = {a} * {b} / gcd({a}, {b})."),
        *euclid,
        ("compute", f"gcd = {g}, so lcm = {a * b} / {g} = {ans}."),
        ("check", f"{ans} / {a} = {ans // a} and {ans} / {b} = {ans // b}."),
        conclude(str(ans)),
    ]
    return Problem(prompt, steps, str(ans), {"op": "lcm", "numbers": [a, b]})


def gcd_of_two(rng: random.Random, difficulty: str) -> Problem | None:
    # Two multiples of a drawn gcd, so the answer is rarely 1.
    top = 12 if difficulty == "easy" else 40
    g0 = rng.randint(2, top)
    limit = 60 if difficulty == "easy" else 400
    mults = rng.sample(range(1, max(3, limit // g0 + 1)), 2)
    a, b = g0 * mults[0], g0 * mults[1]
    euclid, g = euclid_steps(a, b)
    if len(euclid) > 5 or a == b:
        return None
    prompt = rng.choice(
        [f"What is the greatest common divisor of {a} and {b}?", f"Find gcd({a}, {b})."]
    )
    steps = [
        ("parse", "Use the Euclidean algorithm: divide and keep the remainder."),
        *euclid,
        ("compute", f"The last nonzero remainder is {g}, so gcd({a}, {b}) = {g}."),
        ("check", f"{a} / {g} = {a // g} and {b} / {g} = {b // g}."),
        conclude(str(g)),
    ]
    return Problem(prompt, steps, str(g), {"op": "gcd", "numbers": [a, b]})


# ---------------------------------------------------------------------------------------
# Parity and divisibility, each divisor with its school rule


def divisibility_rule(n: int, d: int) -> list[Step]:
    digits = [int(c) for c in str(n)]
    s = sum(digits)
    if d in (3, 9):
        verdict = "is" if s % d == 0 else "is not"
        return [
            ("compute", f"Digit sum: {' + '.join(map(str, digits))} = {s}."),
            (
                "compare",
                f"{s} {verdict} divisible by {d}, and a number is divisible by "
                f"{d} exactly when its digit sum is.",
            ),
        ]
    if d in (5, 10):
        ok = "0 or 5" if d == 5 else "0"
        return [
            (
                "compare",
                f"A number is divisible by {d} when its last digit is {ok}; the "
                f"last digit of {n} is {digits[-1]}.",
            )
        ]
    if d == 4:
        last = n % 100
        verdict = "is" if last % 4 == 0 else "is not"
        return [
            (
                "compare",
                f"A number is divisible by 4 when its last two digits are; "
                f"{last:02d} {verdict} divisible by 4.",
            )
        ]
    if d == 6:
        even = "even" if n % 2 == 0 else "odd"
        verdict = "is" if s % 3 == 0 else "is not"
        return [
            ("compare", f"Divisible by 6 means divisible by both 2 and 3. {n} is {even}."),
            (
                "compute",
                f"Digit sum {' + '.join(map(str, digits))} = {s}, which {verdict} divisible by 3.",
            ),
        ]
    # d == 11: alternating digit sum from the right
    signed = list(reversed(digits))
    alt = sum(v if i % 2 == 0 else -v for i, v in enumerate(signed))
    terms = " ".join(
        ("" if i == 0 else ("+ " if i % 2 == 0 else "- ")) + str(v) for i, v in enumerate(signed)
    )
    verdict = "is" if alt % 11 == 0 else "is not"
    return [
        ("compute", f"Alternating sum of digits from the right: {terms} = {alt}."),
        (
            "compare",
            f"{alt} {verdict} a multiple of 11, and {n} is divisible by 11 "
            f"exactly when that sum is.",
        ),
    ]


def gen_divisibility(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "easy":
        return parity(rng)
    d = rng.choice([3, 5, 9, 10] if difficulty == "medium" else [4, 6, 11])
    q = rng.randint(100 // d + 1, (9999 if difficulty == "medium" else 99999) // d)
    # About half the numbers are multiples of d.
    n = d * q + (0 if rng.random() < 0.5 else rng.randint(1, d - 1))
    answer = "yes" if n % d == 0 else "no"
    prompt = f"Is {n} divisible by {d}? Answer yes or no."
    steps = [
        *divisibility_rule(n, d),
        ("check", f"{n} = {d} * {n // d} + {n % d}, remainder {n % d}."),
        conclude(answer),
    ]
    return Problem(prompt, steps, answer, {"number": n, "divisor": d})


def parity(rng: random.Random) -> Problem:
    n = rng.randint(10, 9999)
    answer = "even" if n % 2 == 0 else "odd"
    last = n % 10
    prompt = rng.choice([f"Is {n} even or odd?", f"Is the number {n} odd or even?"])
    steps = [
        ("parse", f"The last digit of {n} is {last}."),
        (
            "compare",
            f"{last} is {answer}, and a number is {answer} exactly when its last digit is.",
        ),
        ("check", f"{n} = 2 * {n // 2} + {n % 2}, remainder {n % 2}."),
        conclude(answer),
    ]
    return Problem(prompt, steps, answer, {"number": n, "divisor": 2})
