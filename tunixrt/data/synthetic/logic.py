"""Family: logic (AND/OR/NOT expressions evaluated step by step, syllogisms)."""

from __future__ import annotations

import random
from typing import Any

from tunixrt.data.synthetic.common import Problem, Step, conclude, join_and
from tunixrt.data.synthetic.words import NONSENSE

OP_RULES = {
    "AND": "AND is true only when both sides are true.",
    "OR": "OR is true when at least one side is true.",
    "NOT": "NOT flips true and false.",
}
VARIABLES = ["A", "B", "C", "P", "Q", "R", "S", "T"]
Expr = tuple[Any, ...]  # ("var", name) | ("not", e) | ("and"|"or", left, right)

SYLLOGISMS = {
    # form: (premises, question, answer, reasoning); X, Y, Z are filled with nonsense nouns.
    "barbara": (
        "All {Xs} are {Ys}. All {Ys} are {Zs}.",
        "Is every {X} a {Z}?",
        "yes",
        "Every {X} is a {Y}, and every {Y} is a {Z}, so every {X} is a {Z}.",
    ),
    "darii": (
        "All {Ys} are {Zs}. Some {Xs} are {Ys}.",
        "Must some {Xs} be {Zs}?",
        "yes",
        "The {Xs} that are {Ys} are also {Zs}, because all {Ys} are {Zs}.",
    ),
    "celarent": (
        "All {Xs} are {Ys}. No {Ys} are {Zs}.",
        "Can a {X} be a {Z}?",
        "no",
        "A {X} is always a {Y}, and no {Y} is a {Z}, so no {X} is a {Z}.",
    ),
    "undistributed": (
        "All {Xs} are {Ys}. All {Zs} are {Ys}.",
        "Must every {X} be a {Z}?",
        "no",
        "Both groups are inside the {Ys}, but that does not put the "
        "{Xs} inside the {Zs}; a {X} can be a {Y} that is not a {Z}.",
    ),
    "converse": (
        "All {Xs} are {Ys}.",
        "Must every {Y} be a {X}?",
        "no",
        "The statement only says where the {Xs} are; there can be {Ys} that are not {Xs}.",
    ),
}


def render_expr(expr: Expr, top: bool = True) -> str:
    if expr[0] == "var":
        return expr[1]
    if expr[0] == "not":
        return f"NOT {render_expr(expr[1], top=False)}"
    text = f"{render_expr(expr[1], False)} {expr[0].upper()} {render_expr(expr[2], False)}"
    return text if top else f"({text})"


def eval_expr(expr: Expr, env: dict[str, bool], steps: list[Step]) -> bool:
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
    steps.append(
        (
            "compute",
            f"{render_expr(expr)} = {tf[left]} {expr[0].upper()} {tf[right]} = {tf[value]}.",
        )
    )
    return value


def random_expr(rng: random.Random, names: list[str], ops: int, negate: bool) -> Expr:
    expr: Expr = ("var", names[0])
    for name in names[1 : ops + 1]:
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


def gen_logic(rng: random.Random, difficulty: str) -> Problem:
    if difficulty == "hard" and rng.random() < 0.5:
        return syllogism(rng)
    return boolean(rng, difficulty)


def syllogism(rng: random.Random) -> Problem:
    form = rng.choice(sorted(SYLLOGISMS))
    (x, xs), (y, ys), (z, zs) = rng.sample(NONSENSE, 3)
    nouns = {"X": x, "Xs": xs, "Y": y, "Ys": ys, "Z": z, "Zs": zs}
    premises, question, answer, why = (s.format(**nouns) for s in SYLLOGISMS[form])
    prompt = f"{premises} {question} Answer yes or no."
    steps = [
        ("parse", f"Premises: {premises}"),
        ("compute", why),
        ("check", "Only the premises count, since the words are made up."),
        conclude(answer),
    ]
    params = {"kind": "syllogism", "form": form, "terms": [x, y, z]}
    return Problem(prompt, steps, answer, params)


def boolean(rng: random.Random, difficulty: str) -> Problem:
    ops = {"easy": 1, "medium": 2, "hard": 2}[difficulty]
    names = rng.sample(VARIABLES, ops + 1)
    env = {name: rng.random() < 0.5 for name in names}
    expr = random_expr(rng, names, ops, negate=difficulty == "hard")
    text = render_expr(expr)
    facts = join_and([f"{n} is {'true' if env[n] else 'false'}" for n in names])
    prompt = f"Suppose {facts}. Is {text} true or false?"
    steps: list[Step] = [("parse", f"Given: {facts}.")]
    used = [op for op in ("AND", "OR", "NOT") if op in text.split()]
    steps.append(("parse", "Rules: " + " ".join(OP_RULES[op] for op in used)))
    value = eval_expr(expr, env, steps)
    answer = "true" if value else "false"
    steps.append(conclude(answer))
    params: dict[str, Any] = {"kind": "boolean", "expression": text, "values": env}
    return Problem(prompt, steps, answer, params)
