"""What every task family shares: the problem record and how numbers are written."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

# One reasoning step: (type, content); the type is parse, compute, convert, compare, check
# or conclude.
Step = tuple[str, str]


@dataclass(frozen=True)
class Problem:
    prompt: str
    steps: list[Step]
    answer: str
    params: dict[str, Any]  # the structured problem, enough to recompute the answer


# A task family: draws one problem of a difficulty ("easy", "medium", "hard") from the RNG.
Generator = Callable[[random.Random, str], Problem]


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
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def conclude(answer: str) -> Step:
    return ("conclude", f"The answer is {answer}.")
