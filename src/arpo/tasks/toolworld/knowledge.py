"""The knowledge base: fictional towns and people with random facts, and relations between them.

Two kinds of entity, each fact a string:

- a **town** has a ``population`` (a number of ``population_digits`` digits), a ``founding year``
  and a ``mayor`` (a person of the same world, a different one per town);
- a **person** has a ``birth year`` and a ``home town`` (a town of the same world).

``mayor`` and ``home town`` are relations (their value names another entity), so lookups chain:
"the birth year of the mayor of the home town of Tarak". Train and test worlds are built with
one :class:`~arpo.tasks.toolworld.names.NameGenerator`, so their names are disjoint, and each
world's relations stay inside it, so a test task never needs a train entity.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from arpo.tasks.toolworld.config import SplitSizes, ToolworldConfig
from arpo.tasks.toolworld.names import NameGenerator

Kind = Literal["town", "person"]


@dataclass(frozen=True)
class Attribute:
    """A fact an entity of kind ``owner`` has; ``target`` is the kind it names, None for a number."""

    name: str
    owner: Kind
    target: Kind | None = None


ATTRIBUTES: dict[str, Attribute] = {
    attribute.name: attribute
    for attribute in (
        Attribute("population", "town"),
        Attribute("founding year", "town"),
        Attribute("mayor", "town", target="person"),
        Attribute("birth year", "person"),
        Attribute("home town", "person", target="town"),
    )
}
"""All attributes, in the order passages list them."""


@dataclass(frozen=True)
class Entity:
    name: str
    kind: Kind
    facts: dict[str, str]
    """Attribute name → value (a decimal number, or the name of another entity)."""


@dataclass(frozen=True)
class World:
    """The entities of one split, by name."""

    entities: dict[str, Entity]

    def of_kind(self, kind: Kind) -> list[Entity]:
        return [entity for entity in self.entities.values() if entity.kind == kind]

    def fact(self, name: str, attribute: str) -> str:
        return self.entities[name].facts[attribute]


def draw_number(rng: random.Random, digits: tuple[int, int]) -> int:
    """A number whose digit count is uniform in ``digits`` and whose value is uniform given it."""
    count = rng.randint(*digits)
    return rng.randint(10 ** (count - 1), 10**count - 1)


def build_world(
    rng: random.Random, names: NameGenerator, sizes: SplitSizes, config: ToolworldConfig
) -> World:
    """A world of ``sizes.towns`` towns and ``sizes.people`` people with random facts."""
    towns = [names.new() for _ in range(sizes.towns)]
    people = [names.new() for _ in range(sizes.people)]
    mayors = rng.sample(people, len(towns))
    entities = {}
    for town, mayor in zip(towns, mayors, strict=True):
        facts = {
            "population": str(draw_number(rng, config.population_digits)),
            "founding year": str(rng.randint(*config.year_range)),
            "mayor": mayor,
        }
        entities[town] = Entity(town, "town", facts)
    for person in people:
        facts = {"birth year": str(rng.randint(*config.year_range)), "home town": rng.choice(towns)}
        entities[person] = Entity(person, "person", facts)
    return World(entities)
