"""Families: adding days to a calendar date, adding minutes to a 24-hour clock time."""

from __future__ import annotations

import random

from tunixrt.data.synthetic.common import Problem, Step, conclude
from tunixrt.data.synthetic.words import MONTHS

# ---------------------------------------------------------------------------------------
# Calendar dates, walked month by month (leap years included)


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


def date_steps(year: int, month: int, day: int, n: int) -> tuple[list[Step], str]:
    """Steps that add n days to a date one month at a time, and the resulting date."""
    steps: list[Step] = []
    left = n
    while True:
        if month == 2:
            steps.append(("convert", leap_reason(year)))
        length = month_days(year, month)
        if day + left <= length:
            end = iso(year, month, day + left)
            if left:
                steps.append(
                    (
                        "compute",
                        f"{day} + {left} = {day + left}, which fits in "
                        f"{MONTHS[month - 1]} ({length} days), so the date is {end}.",
                    )
                )
            return steps, end
        jump = length - day + 1
        name = MONTHS[month - 1]
        year, month, day = (year + 1, 1, 1) if month == 12 else (year, month + 1, 1)
        left -= jump
        reached = iso(year, month, day)
        if not left:
            steps.append(
                (
                    "compute",
                    f"{name} has {length} days, so {jump} days reach "
                    f"{reached}, which uses up all the days.",
                )
            )
            return steps, reached
        steps.append(
            (
                "compute",
                f"{name} has {length} days, so {jump} days reach {reached}, leaving {left} days.",
            )
        )


def gen_date_arithmetic(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "hard":
        # Century years and leap years, starting near February or the year's end.
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
    prompt = rng.choice(
        [
            f"What date is {n} days after {written}? Answer as YYYY-MM-DD.",
            f"Add {n} days to {written}. Give the date as YYYY-MM-DD.",
        ]
    )
    steps.insert(0, ("parse", f"Start from {start} and add {n} days."))
    steps.append(("check", f"Counting back {n} days from {answer} returns to {start}."))
    steps.append(conclude(answer))
    return Problem(prompt, steps, answer, {"start": start, "days": n})


# ---------------------------------------------------------------------------------------
# Clock times on a 24-hour clock, wrapping past midnight


def hhmm(total_minutes: int) -> str:
    return f"{total_minutes // 60 % 24:02d}:{total_minutes % 60:02d}"


def gen_clock_time(rng: random.Random, difficulty: str) -> Problem:
    # start: minutes since midnight, on a 5-minute grid. Hard problems start in the evening,
    # so many of them cross midnight.
    if difficulty == "easy":
        start, n = rng.randint(0, 22 * 12) * 5, rng.randint(5, 59)
    elif difficulty == "medium":
        start, n = rng.randint(12, 18 * 12) * 5, rng.randint(61, 300)
    else:
        start, n = rng.randint(19 * 12, 24 * 12 - 1) * 5, rng.randint(90, 600)
    t0, t1 = hhmm(start), hhmm(start + n)
    prompt = rng.choice(
        [
            f"What time is it {n} minutes after {t0}? Use the 24-hour clock.",
            f"A movie starts at {t0} and lasts {n} minutes. At what time does it end "
            "(24-hour clock)?",
            f"A train leaves at {t0} and the trip takes {n} minutes. When does it arrive "
            "(24-hour clock)?",
        ]
    )
    return Problem(prompt, clock_steps(start, n), t1, {"start": t0, "minutes": n})


def clock_steps(start: int, n: int) -> list[Step]:
    """Add the whole hours of n first, then the remaining minutes."""
    hours, minutes = divmod(n, 60)
    end = start + n
    t0, t1 = hhmm(start), hhmm(end)
    steps: list[Step] = [("parse", f"Start at {t0} and add {n} minutes.")]
    mid = start
    if hours:
        steps.append(
            (
                "convert",
                f"{n} minutes = {hours} hour{'s' if hours > 1 else ''} and {minutes} minutes.",
            )
        )
        mid = start + 60 * hours
        wrap = " (past midnight)" if mid >= 24 * 60 else ""
        steps.append(("compute", f"{t0} + {hours} h = {hhmm(mid)}{wrap}."))
    if minutes:
        total = mid % 60 + minutes
        if total >= 60:
            wrap = " (past midnight)" if end // (24 * 60) > mid // (24 * 60) else ""
            steps.append(
                (
                    "compute",
                    f"{hhmm(mid)} + {minutes} min: {mid % 60} + {minutes} = "
                    f"{total} minutes = 1 hour {total - 60} minutes, so {t1}{wrap}.",
                )
            )
        else:
            steps.append(
                (
                    "compute",
                    f"{hhmm(mid)} + {minutes} min: {mid % 60} + {minutes} = {total}, so {t1}.",
                )
            )
    span = f"{hours} h {minutes} min = {n} minutes" if hours else f"{n} minutes"
    steps.append(("check", f"From {t0} to {t1} is {span}."))
    steps.append(conclude(t1))
    return steps
