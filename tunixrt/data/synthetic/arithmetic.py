"""Families: multi-step arithmetic word problems, percentages and linear equations."""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

from tunixrt.data.synthetic.common import Problem, Step, conclude, fmt, paren
from tunixrt.data.synthetic.words import CONTAINERS, GOODS, NAMES

# ---------------------------------------------------------------------------------------
# Word problems: someone has b containers of k items each, then gains, sells or shares.


@dataclass(frozen=True)
class Story:
    name: str
    one: str  # the container, singular
    many: str  # the container, plural
    item: str
    b: int  # containers
    k: int  # items per container

    @property
    def total(self) -> int:
        return self.b * self.k

    @property
    def setup(self) -> str:
        return (
            f"{self.name} has {self.b} {self.many} of {self.item}, "
            f"and each {self.one} holds {self.k} {self.item}."
        )

    @property
    def total_step(self) -> Step:
        return (
            "compute",
            f"Each {self.one} holds {self.k} {self.item}, so {self.b} {self.many} hold "
            f"{self.b} * {self.k} = {self.total} {self.item}.",
        )


def gen_arithmetic_word(rng: random.Random, difficulty: str) -> Problem:
    name = rng.choice(NAMES)
    one, many, kinds = rng.choice(CONTAINERS)
    item = rng.choice(kinds)
    story = Story(name, one, many, item, rng.randint(2, 12), rng.randint(3, 24))
    problem: Problem | None
    if difficulty == "easy":
        problem = add_remove(rng, story) if rng.random() < 0.5 else total(story)
    elif difficulty == "medium":
        problem = sell(rng, story) if rng.random() < 0.5 else share(rng, story)
    else:
        problem = two_groups_sell(rng, story) if rng.random() < 0.5 else sell_then_share(rng, story)
    # None: the drawn numbers do not fit the template, so draw a whole new problem.
    return problem if problem is not None else gen_arithmetic_word(rng, difficulty)


def add_remove(rng: random.Random, story: Story) -> Problem:
    name, item = story.name, story.item
    start, gain = rng.randint(5, 80), rng.randint(3, 60)
    lose = rng.randint(1, start + gain - 1)
    mid, end = start + gain, start + gain - lose
    prompt = (
        f"{name} has {start} {item}. {name} gets {gain} more and then gives away "
        f"{lose}. How many {item} does {name} have now?"
    )
    steps = [
        ("parse", f"{name} starts with {start} {item}, gains {gain} and gives away {lose}."),
        ("compute", f"After gaining {gain}: {start} + {gain} = {mid} {item}."),
        ("compute", f"After giving away {lose}: {mid} - {lose} = {end} {item}."),
        conclude(str(end)),
    ]
    params = {"template": "add_remove", "start": start, "gain": gain, "lose": lose}
    return Problem(prompt, steps, str(end), params)


def total(story: Story) -> Problem:
    b, k, t, item = story.b, story.k, story.total, story.item
    prompt = f"{story.setup} How many {item} does {story.name} have in total?"
    steps = [
        ("parse", f"There are {b} {story.many} with {k} {item} in each."),
        story.total_step,
        ("check", f"Splitting back, {t} / {k} = {b} {story.many}, which matches."),
        conclude(str(t)),
    ]
    return Problem(prompt, steps, str(t), {"template": "total", "b": b, "k": k})


def sell(rng: random.Random, story: Story) -> Problem:
    b, k, t, item = story.b, story.k, story.total, story.item
    s = rng.randint(1, t - 1)
    left = t - s
    prompt = f"{story.setup} {story.name} gives away {s} {item}. How many {item} are left?"
    steps = [
        ("parse", f"There are {b} {story.many} of {k} {item}, and {s} are given away."),
        story.total_step,
        ("compute", f"Giving away {s} leaves {t} - {s} = {left} {item}."),
        conclude(str(left)),
    ]
    return Problem(prompt, steps, str(left), {"template": "sell", "b": b, "k": k, "s": s})


def share(rng: random.Random, story: Story) -> Problem | None:
    b, k, t, item = story.b, story.k, story.total, story.item
    g = rng.choice([d for d in range(2, 10) if t % d == 0 and d != b] or [1])
    if g == 1:
        return None
    q = t // g
    prompt = (
        f"{story.setup} {story.name} shares all the {item} equally among {g} friends. "
        f"How many {item} does each friend get?"
    )
    steps = [
        ("parse", f"There are {b} {story.many} of {k} {item}, shared by {g} friends."),
        story.total_step,
        ("compute", f"Sharing {t} {item} among {g} friends gives {t} / {g} = {q} each."),
        ("check", f"{g} * {q} = {t}, so nothing is left over."),
        conclude(str(q)),
    ]
    return Problem(prompt, steps, str(q), {"template": "share", "b": b, "k": k, "g": g})


def two_groups_sell(rng: random.Random, story: Story) -> Problem:
    t, item = story.total, story.item
    c, m = rng.randint(2, 9), rng.randint(2, 15)
    u = c * m
    s = rng.randint(1, t + u - 1)
    left = t + u - s
    prompt = (
        f"{story.setup} {story.name} also has {c} bags with {m} {item} each, and then gives "
        f"away {s} {item}. How many {item} does {story.name} have left?"
    )
    steps = [
        story.total_step,
        ("compute", f"The bags hold {c} * {m} = {u} {item}."),
        ("compute", f"Together that is {t} + {u} = {t + u} {item}."),
        ("compute", f"After giving away {s}: {t + u} - {s} = {left} {item}."),
        conclude(str(left)),
    ]
    params = {"template": "two_groups_sell", "b": story.b, "k": story.k, "c": c, "m": m, "s": s}
    return Problem(prompt, steps, str(left), params)


def sell_then_share(rng: random.Random, story: Story) -> Problem | None:
    t, item = story.total, story.item
    g = rng.randint(2, 6)
    if t <= g:
        return None
    q = rng.randint(1, (t - 1) // g)
    s = t - g * q
    prompt = (
        f"{story.setup} {story.name} gives away {s} {item} and shares the rest equally among "
        f"{g} friends. How many {item} does each friend get?"
    )
    steps = [
        story.total_step,
        ("compute", f"After giving away {s}: {t} - {s} = {t - s} {item}."),
        ("compute", f"Shared among {g} friends: {t - s} / {g} = {q} each."),
        ("check", f"{g} * {q} + {s} = {t}, which matches the total."),
        conclude(str(q)),
    ]
    params = {"template": "sell_then_share", "b": story.b, "k": story.k, "s": s, "g": g}
    return Problem(prompt, steps, str(q), params)


# ---------------------------------------------------------------------------------------
# Percentages: percent of a number, one price change, two changes in a row.

PERCENTS = [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 60, 75, 80]


def gen_percentage(rng: random.Random, difficulty: str) -> Problem:
    p = rng.choice(PERCENTS)
    n = 20 * rng.randint(1, 25)  # a multiple of 20, so every percent above is exact
    if difficulty == "easy":
        return percent_of(n, p)
    item = rng.choice(GOODS)
    if difficulty == "medium":
        return one_change(rng, item, n, p)
    return two_changes(rng, item, n, p)


def percent_of(n: int, p: int) -> Problem:
    part = Fraction(n * p, 100)
    steps = [
        ("convert", f"{p}% means {p} out of 100, so multiply by {p}/100."),
        ("compute", f"{n} * {p} / 100 = {n * p} / 100 = {fmt(part)}."),
        (
            "check",
            f"10% of {n} is {fmt(Fraction(n, 10))}, and {p}% is {p}/10 of that: "
            f"{fmt(Fraction(n, 10))} * {fmt(Fraction(p, 10))} = {fmt(part)}.",
        ),
        conclude(fmt(part)),
    ]
    return Problem(f"What is {p}% of {n}?", steps, fmt(part), {"kind": "of", "base": n, "p": p})


def one_change(rng: random.Random, item: str, n: int, p: int) -> Problem:
    part = Fraction(n * p, 100)
    kind = rng.choice(["discount", "increase"])
    sign = -1 if kind == "discount" else 1
    new = n + sign * part
    if kind == "discount":
        prompt = (
            f"A {item} costs ${n}. It is on sale for {p}% off. What is the sale price in dollars?"
        )
        change = ("compute", f"The discount is {p}% of {n}: {n} * {p} / 100 = {fmt(part)}.")
        apply = ("compute", f"The sale price is {n} - {fmt(part)} = {fmt(new)}.")
    else:
        prompt = (
            f"A {item} costs ${n}. The price goes up by {p}%. What is the new price in dollars?"
        )
        change = ("compute", f"The increase is {p}% of {n}: {n} * {p} / 100 = {fmt(part)}.")
        apply = ("compute", f"The new price is {n} + {fmt(part)} = {fmt(new)}.")
    keep = 100 + sign * p
    steps = [
        change,
        apply,
        ("check", f"That is {keep}% of {n}: {n} * {keep} / 100 = {fmt(new)}."),
        conclude(fmt(new)),
    ]
    return Problem(prompt, steps, fmt(new), {"kind": kind, "base": n, "p": p})


def two_changes(rng: random.Random, item: str, n: int, p: int) -> Problem:
    part = Fraction(n * p, 100)
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
        prompt = (
            f"A {item} costs ${n}. It is discounted by {p}%, and then the new price is "
            f"discounted by another {q}%. What is the final price in dollars?"
        )
    else:
        prompt = (
            f"A {item} costs ${n}. Its price is raised by {p}% and then lowered by "
            f"{q}%. What is the final price in dollars?"
        )
    steps = [
        (
            "compute",
            f"First change: {p}% of {n} is {fmt(part)}, so the price becomes "
            f"{n} {op1} {fmt(part)} = {fmt(mid)}.",
        ),
        ("compute", f"Second change: {q}% of {fmt(mid)} is {fmt(mid)} * {q} / 100 = {fmt(part2)}."),
        ("compute", f"The final price is {fmt(mid)} {op2} {fmt(part2)} = {fmt(final)}."),
        (
            "check",
            f"The second {q}% applies to {fmt(mid)}, not to the original {n}, "
            f"so the changes do not simply add up.",
        ),
        conclude(fmt(final)),
    ]
    return Problem(prompt, steps, fmt(final), {"kind": kind, "base": n, "p": p, "q": q})


# ---------------------------------------------------------------------------------------
# Linear equations a*x + b = c*x + d with a whole-number solution.


def side(a: int, b: int) -> str:
    """Text of a*x + b, e.g. 3x - 5, x + 4, 7, 2x."""
    xs = "" if a == 0 else ("x" if a == 1 else f"{a}x")
    if not xs:
        return str(b)
    if b == 0:
        return xs
    return f"{xs} {'+' if b > 0 else '-'} {abs(b)}"


def substituted(a: int, x: int, b: int) -> str:
    """a*x + b with x filled in, e.g. 3 * (-2) + 5."""
    product = f"{a} * {paren(x)}" if a != 1 else paren(x)
    return product + (f" {'+' if b > 0 else '-'} {abs(b)}" if b else "")


def gen_linear_equation(rng: random.Random, difficulty: str) -> Problem:
    # Draw the solution x first, then build the equation around it.
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
    return Problem(prompt, solve_steps(a, b, c, d, x), str(x), {"a": a, "b": b, "c": c, "d": d})


def solve_steps(a: int, b: int, c: int, d: int, x: int) -> list[Step]:
    steps: list[Step] = [("parse", f"The equation is {side(a, b)} = {side(c, d)}.")]
    k = a - c
    if c:
        steps.append(("compute", f"Subtract {side(c, 0)} from both sides: {side(k, b)} = {d}."))
    if b > 0:
        steps.append(
            ("compute", f"Subtract {b} from both sides: {side(k, 0)} = {d} - {b} = {d - b}.")
        )
    elif b < 0:
        steps.append(("compute", f"Add {-b} to both sides: {side(k, 0)} = {d} + {-b} = {d - b}."))
    if k != 1:
        steps.append(("compute", f"Divide both sides by {k}: x = {d - b} / {k} = {x}."))
    left, right = a * x + b, c * x + d
    lhs, rhs = substituted(a, x, b), (substituted(c, x, d) if c else str(d))
    steps.append(("check", f"Left side: {lhs} = {left}. Right side: {rhs} = {right}. They match."))
    steps.append(conclude(str(x)))
    return steps
