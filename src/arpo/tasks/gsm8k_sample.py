"""A seeded generator of grade-school math word problems in the GSM8K format, for the GSM8K example.

Each row is ``{"question", "answer", "idx"}`` like the GSM8K files (Cobbe et al. 2021, arXiv
2110.14168): the answer is a worked solution, one line per step with the calculator annotation
``<<expression=value>>``, ending in ``#### <integer>``, so the ``gsm8k`` layout of
:mod:`arpo.tasks.layouts` loads it unchanged. The problems are synthetic (eight templates, two to
four arithmetic steps, every intermediate and final value a non-negative integer): the example
runs on any machine without downloading GSM8K, and the same seed always writes the same file.
"""

from __future__ import annotations

import json
import operator
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from arpo.io import atomic_write_text

NAMES = (
    ("Ana", "she"), ("Ben", "he"), ("Chloe", "she"), ("Dev", "he"), ("Elena", "she"), ("Farid", "he"),
    ("Grace", "she"), ("Hugo", "he"), ("Iris", "she"), ("Jamal", "he"), ("Kira", "she"), ("Leo", "he"),
)  # fmt: skip

OPERATORS: dict[str, Callable[[int, int], int]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.floordiv,  # exact: calc checks the remainder first
}


@dataclass(frozen=True)
class Problem:
    """One word problem: the question, the solution's lines and the final integer answer."""

    question: str
    steps: tuple[str, ...]
    answer: int

    def row(self, idx: int) -> dict[str, object]:
        """The problem as a GSM8K row."""
        solution = "\n".join([*self.steps, f"#### {self.answer}"])
        return {"question": self.question, "answer": solution, "idx": idx}


def calc(*terms: int | str) -> tuple[str, int]:
    """A solution step as GSM8K writes it, ``a + b = <<a+b=c>>c``, and its value ``c``.

    ``terms`` alternate integers and operators (``+ - * /``) and are applied left to right, which
    is the usual reading for the expressions the templates build (one operator kind per step).
    Raises ValueError for an inexact division or a negative value: the templates pick operands
    so that neither happens.
    """
    value = terms[0]
    assert isinstance(value, int)
    for op, operand in zip(terms[1::2], terms[2::2], strict=True):
        assert isinstance(op, str) and isinstance(operand, int)
        if op == "/" and value % operand:
            raise ValueError(f"{value} / {operand} is not an integer")
        value = OPERATORS[op](value, operand)
    if value < 0:
        raise ValueError(f"{terms} gives {value}; the templates must give non-negative integers")
    text = " ".join(str(t) for t in terms)
    return f"{text} = <<{text.replace(' ', '')}={value}>>{value}", value


def _eggs(rng: random.Random) -> Problem:
    name, he = rng.choice(NAMES)
    eat, bake = rng.randint(2, 5), rng.randint(2, 6)
    laid, price = rng.randint(eat + bake + 3, 30), rng.randint(2, 5)
    left_text, left = calc(laid, "-", eat, "-", bake)
    money_text, money = calc(left, "*", price)
    return Problem(
        f"{name}'s hens lay {laid} eggs per day. {he.capitalize()} eats {eat} for breakfast and uses {bake} "
        f"for baking every day. {he.capitalize()} sells the rest for ${price} each. How many dollars does "
        f"{name} make every day?",
        (f"{name} sells {left_text} eggs a day.", f"{he.capitalize()} makes {money_text} dollars a day."),
        money,
    )


def _change(rng: random.Random) -> Problem:
    name, he = rng.choice(NAMES)
    books, book_price = rng.randint(2, 6), rng.randint(2, 9)
    pens, pen_price = rng.randint(2, 8), rng.randint(1, 3)
    books_text, books_cost = calc(books, "*", book_price)
    pens_text, pens_cost = calc(pens, "*", pen_price)
    total_text, total = calc(books_cost, "+", pens_cost)
    bill = next(b for b in (20, 50, 100) if b >= total)
    change_text, change = calc(bill, "-", total)
    return Problem(
        f"{name} buys {books} notebooks at ${book_price} each and {pens} pens at ${pen_price} each. "
        f"{he.capitalize()} pays with a ${bill} bill. How much change, in dollars, does {he} get?",
        (
            f"The notebooks cost {books_text} dollars.",
            f"The pens cost {pens_text} dollars.",
            f"Together they cost {total_text} dollars.",
            f"The change is {change_text} dollars.",
        ),
        change,
    )


def _pages(rng: random.Random) -> Problem:
    name, he = rng.choice(NAMES)
    monday, factor = rng.randint(8, 40), rng.choice((2, 3))
    word = {2: "twice", 3: "three times"}[factor]
    tuesday_text, tuesday = calc(monday, "*", factor)
    read_text, read = calc(monday, "+", tuesday)
    pages = rng.randint(read + 10, read + 200)
    left_text, left = calc(pages, "-", read)
    return Problem(
        f"{name}'s book has {pages} pages. {he.capitalize()} reads {monday} pages on Monday and {word} as "
        f"many pages on Tuesday. How many pages does {he} still have to read?",
        (
            f"On Tuesday {he} reads {tuesday_text} pages.",
            f"In the two days {he} reads {read_text} pages.",
            f"{he.capitalize()} still has {left_text} pages to read.",
        ),
        left,
    )


def _train(rng: random.Random) -> Problem:
    speed1, hours1 = rng.randint(40, 120), rng.randint(2, 5)
    speed2, hours2 = rng.randint(30, 100), rng.randint(1, 4)
    first_text, first = calc(speed1, "*", hours1)
    second_text, second = calc(speed2, "*", hours2)
    total_text, total = calc(first, "+", second)
    return Problem(
        f"A train travels at {speed1} kilometers per hour for {hours1} hours, then at {speed2} kilometers per "
        f"hour for {hours2} hours. How many kilometers does it travel in total?",
        (
            f"First it travels {first_text} kilometers.",
            f"Then it travels {second_text} kilometers.",
            f"In total it travels {total_text} kilometers.",
        ),
        total,
    )


def _candies(rng: random.Random) -> Problem:
    name, he = rng.choice(NAMES)
    cousins, each, given = rng.randint(2, 8), rng.randint(3, 15), rng.randint(2, 20)
    candies = given + cousins * each
    rest_text, rest = calc(candies, "-", given)
    each_text, each = calc(rest, "/", cousins)
    return Problem(
        f"{name} has {candies} candies. {he.capitalize()} gives {given} to a friend and shares the rest "
        f"equally among {cousins} cousins. How many candies does each cousin get?",
        (f"{he.capitalize()} shares {rest_text} candies.", f"Each cousin gets {each_text} candies."),
        each,
    )


def _savings(rng: random.Random) -> Problem:
    name, he = rng.choice(NAMES)
    weekly, weeks = rng.randint(5, 30), rng.randint(3, 12)
    saved_text, saved = calc(weekly, "*", weeks)
    spent = rng.randint(1, saved - 1)
    left_text, left = calc(saved, "-", spent)
    return Problem(
        f"{name} saves ${weekly} every week. After {weeks} weeks {he} spends ${spent} on a gift. How many "
        f"dollars does {he} have left?",
        (
            f"{he.capitalize()} saves {saved_text} dollars.",
            f"{he.capitalize()} has {left_text} dollars left.",
        ),
        left,
    )


def _garden(rng: random.Random) -> Problem:
    rows, per_row, tomatoes = rng.randint(3, 12), rng.randint(4, 15), rng.randint(3, 20)
    plants_text, plants = calc(rows, "*", per_row)
    total_text, total = calc(plants, "*", tomatoes)
    return Problem(
        f"A garden has {rows} rows with {per_row} tomato plants in each row. Each plant gives {tomatoes} "
        "tomatoes. How many tomatoes does the garden give?",
        (f"The garden has {plants_text} plants.", f"They give {total_text} tomatoes."),
        total,
    )


def _cookies(rng: random.Random) -> Problem:
    batches, per_batch, box = rng.randint(3, 10), rng.choice((12, 18, 24, 30)), rng.choice((2, 3, 6))
    made_text, made = calc(batches, "*", per_batch)
    boxes_wanted = rng.randint(1, made // box - 1)
    sold = made - boxes_wanted * box
    left_text, left = calc(made, "-", sold)
    boxes_text, boxes = calc(left, "/", box)
    return Problem(
        f"A bakery bakes {batches} batches of {per_batch} cookies. It sells {sold} cookies and packs the rest "
        f"into boxes of {box}. How many boxes does it fill?",
        (
            f"It bakes {made_text} cookies.",
            f"It has {left_text} cookies left.",
            f"It fills {boxes_text} boxes.",
        ),
        boxes,
    )


TEMPLATES: dict[str, Callable[[random.Random], Problem]] = {
    "eggs": _eggs,
    "change": _change,
    "pages": _pages,
    "train": _train,
    "candies": _candies,
    "savings": _savings,
    "garden": _garden,
    "cookies": _cookies,
}


def generate_problems(n: int, seed: int = 0, exclude: Collection[str] = ()) -> list[Problem]:
    """``n`` problems, templates drawn uniformly; the same ``seed`` gives the same problems.

    A drawn problem whose question is in ``exclude`` (e.g. the training file's, for a held-out
    set) or was already drawn is dropped and another is drawn. Raises ValueError when 100·n draws
    do not give ``n`` distinct new questions (the templates' space is exhausted).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = random.Random(seed)
    templates = list(TEMPLATES.values())
    problems: list[Problem] = []
    seen = set(exclude)
    for _ in range(100 * n):
        problem = rng.choice(templates)(rng)
        if problem.question not in seen:
            seen.add(problem.question)
            problems.append(problem)
            if len(problems) == n:
                return problems
    raise ValueError(
        f"found only {len(problems)} distinct problems outside the excluded ones in {100 * n} draws"
    )


def questions_of(path: str | Path) -> set[str]:
    """The ``question`` fields of a GSM8K-format JSONL file (to exclude from a held-out set)."""
    with Path(path).open(encoding="utf-8") as lines:
        return {json.loads(line)["question"] for line in lines if line.strip()}


def write_gsm8k_sample(out: str | Path, n: int = 200, seed: int = 0, exclude: Collection[str] = ()) -> Path:
    """Write ``n`` distinct problems (none in ``exclude``) as GSM8K JSONL rows to ``out``
    (atomically: complete or not at all)."""
    rows = [problem.row(idx) for idx, problem in enumerate(generate_problems(n, seed, exclude))]
    return atomic_write_text(out, "".join(json.dumps(row) + "\n" for row in rows))
