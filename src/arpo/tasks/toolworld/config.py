"""The configuration of the built-in ``toolworld`` environment: sizes, difficulty knobs, seed.

Everything the generator produces is a function of this config: the same config (seed included)
gives byte-identical files. The knobs that set how hard the environment is:

- ``families``: the mix of task families (:data:`FAMILIES`): one-hop lookups, multi-hop lookups,
  pure computation, a lookup followed by computation, and two lookups compared by computation;
- ``max_hops``: the longest lookup chain of the ``multi_hop`` family;
- ``operand_digits`` / ``population_digits``: how long the numbers are (digit counts are drawn
  uniformly, so short and long numbers are equally common);
- ``towns`` / ``people``: entities per split (train and test worlds have disjoint names);
- ``imperfect_demo_share``: the share of cold-start demonstrations that use tools wrongly or
  not at all and so answer wrongly, leaving RL room to improve on SFT.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Family = Literal["lookup", "multi_hop", "compute", "lookup_compute", "compare"]
FAMILIES: tuple[str, ...] = get_args(Family)

ImperfectKind = Literal["no_tool", "wrong_entity", "stop_early", "skip_python", "wrong_operand"]
IMPERFECT_KINDS: tuple[str, ...] = get_args(ImperfectKind)


class SplitSizes(BaseModel):
    """How many entities and tasks one split (train or test) has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    towns: int = Field(ge=2, description="Towns in this split's world (each has a mayor and residents).")
    people: int = Field(ge=2, description="People in this split's world; at least as many as towns (mayors).")
    tasks: int = Field(ge=1, description="Tasks generated on this split's entities.")

    @model_validator(mode="after")
    def _enough_people(self) -> SplitSizes:
        if self.people < self.towns:
            raise ValueError(
                f"people ({self.people}) must be >= towns ({self.towns}): every town needs its own mayor"
            )
        return self


class ToolworldConfig(BaseModel):
    """A seeded procedural environment whose tasks need the search and python tools (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, description="Seed of every random choice; same seed, same files.")
    train: SplitSizes = Field(
        default_factory=lambda: SplitSizes(towns=150, people=300, tasks=3000),
        description="Train world: tasks for SFT demonstrations and RL prompts.",
    )
    test: SplitSizes = Field(
        default_factory=lambda: SplitSizes(towns=50, people=100, tasks=300),
        description="Test world: held-out entities (disjoint names) for evaluation.",
    )
    families: dict[Family, float] = Field(
        default_factory=lambda: {
            "lookup": 0.25,
            "multi_hop": 0.2,
            "compute": 0.2,
            "lookup_compute": 0.2,
            "compare": 0.15,
        },
        description="Relative weight of each task family; families left out are not generated.",
    )
    max_hops: int = Field(2, ge=2, le=4, description="Longest lookup chain of multi_hop tasks (2..max_hops).")
    operand_digits: tuple[int, int] = Field(
        (3, 5),
        description="Digit count range (inclusive) of the numbers in compute tasks and of constant operands.",
    )
    population_digits: tuple[int, int] = Field(
        (4, 6), description="Digit count range (inclusive) of town populations."
    )
    year_range: tuple[int, int] = Field(
        (1000, 1999), description="Founding and birth years are drawn uniformly from this range."
    )
    operations: tuple[Literal["plus", "minus", "times"], ...] = Field(
        ("plus", "minus", "times"), description="Arithmetic operations the computing families use."
    )
    name_syllables: tuple[int, int] = Field(
        (2, 2), description="Syllable count range of invented names (short names are easier to copy)."
    )
    system_prompt: bool = Field(
        True,
        description="Start each prompt with the compact system prompt describing the tools and tags "
        "(~31 tokens); a model trained from scratch learns the protocol from demonstrations without it.",
    )
    search_top_k: int = Field(
        1,
        ge=1,
        le=5,
        description="Passages the search tool returns per query (longer results, harder reading).",
    )
    imperfect_demo_share: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Share of demonstrations with wrong or missing tool use (wrong answers).",
    )
    imperfect_kinds: tuple[ImperfectKind, ...] = Field(
        IMPERFECT_KINDS,  # type: ignore[arg-type]
        description="Kinds of imperfect demonstrations, each drawn among those that apply to the task: "
        "no_tool (guess without tools), wrong_entity (look up a different entity), stop_early (answer "
        "an intermediate value), skip_python (estimate instead of computing), wrong_operand (mistype a number).",
    )
    vocab_size: int = Field(
        1024, ge=300, le=32768, description="Size of the trained BPE tokenizer's vocabulary."
    )

    @field_validator("families")
    @classmethod
    def _some_family(cls, families: dict[str, float]) -> dict[str, float]:
        if any(weight < 0 for weight in families.values()) or not any(families.values()):
            raise ValueError(f"family weights must be >= 0 with at least one > 0, got {families}")
        return {name: weight for name, weight in families.items() if weight > 0}

    @field_validator("operand_digits", "population_digits", "year_range", "name_syllables")
    @classmethod
    def _ordered_range(cls, bounds: tuple[int, int]) -> tuple[int, int]:
        low, high = bounds
        if not 1 <= low <= high:
            raise ValueError(f"expected a range (low, high) with 1 <= low <= high, got {bounds}")
        return bounds

    @field_validator("operations", "imperfect_kinds")
    @classmethod
    def _non_empty(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if not values or len(set(values)) != len(values):
            raise ValueError(f"expected distinct values, at least one, got {values}")
        return values
