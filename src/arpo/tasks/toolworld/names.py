"""Invented, pronounceable names: a few consonant-vowel syllables, capitalised (``Vemo``, ``Tarilo``).

Names are built from 70 syllables (14 consonants × 5 vowels), so a name is short in tokens and
every name, seen or unseen, is made of the same pieces; the facts attached to a name are drawn at
random, so no model can know them without looking them up. Each :class:`NameGenerator` hands out
distinct names and never one of the ``reserved`` words (the environment's own vocabulary).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
SYLLABLES: tuple[str, ...] = tuple(c + v for c in CONSONANTS for v in VOWELS)


def invent_name(rng: random.Random, syllables: tuple[int, int]) -> str:
    """A random name of ``syllables[0]..syllables[1]`` syllables (not necessarily new)."""
    count = rng.randint(*syllables)
    return "".join(rng.choice(SYLLABLES) for _ in range(count)).capitalize()


class NameGenerator:
    """Distinct invented names, none of them in ``reserved`` (compared lower-cased)."""

    def __init__(self, rng: random.Random, syllables: tuple[int, int], reserved: Iterable[str] = ()) -> None:
        self.rng = rng
        self.syllables = syllables
        self.used = {word.lower() for word in reserved}
        self.capacity = sum(len(SYLLABLES) ** n for n in range(syllables[0], syllables[1] + 1))

    def new(self) -> str:
        """A name not handed out before; raises ValueError when the name space is nearly used up."""
        for _ in range(1000):
            name = invent_name(self.rng, self.syllables)
            if name.lower() not in self.used:
                self.used.add(name.lower())
                return name
        raise ValueError(
            f"could not find a new name among {self.capacity} with {self.syllables} syllables: "
            "raise name_syllables or lower the number of towns and people"
        )
