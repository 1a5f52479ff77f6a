"""Typed configuration: a YAML file plus dotted command-line overrides, validated by pydantic.

    arpo rollout --config my.yaml rollout.branching.initial_rollouts=4 seed=3

Overrides are ``dotted.key=value`` with the value parsed as YAML (``4`` is an int, ``true`` a bool,
``[a, b]`` a list, anything else a string). A number addresses an element of a list:
``datasets.0.limit=50`` changes the first data set, ``datasets.1={...}`` sets the second (one past
the end appends). Every config model forbids unknown keys, so a typo is
an error that names the key; a bad value is an error that names the key and the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message says where and why."""


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` → ``{"a": {"b": 1}, "c": "x"}``."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of {part!r}")
            node = child
        node[parts[-1]] = value
    return tree


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        elif (
            isinstance(value, dict)
            and isinstance(merged.get(key), list)
            and value
            and all(map(str.isdigit, value))
        ):
            merged[key] = _merge_into_list(key, merged[key], value)
        else:
            merged[key] = value
    return merged


def _merge_into_list(key: str, items: list[Any], update: dict[str, Any]) -> list[Any]:
    """``items`` with ``update``'s numbered entries merged in (index ``len(items)`` appends)."""
    merged = list(items)
    for index, value in sorted(update.items(), key=lambda item: int(item[0])):
        position = int(index)
        if position > len(merged):
            raise ConfigError(f"{key}.{index}: {key} has {len(merged)} items (one past the end appends)")
        if position == len(merged):
            merged.append(value)
        elif isinstance(value, dict) and isinstance(merged[position], dict):
            merged[position] = deep_merge(merged[position], value)
        else:
            merged[position] = value
    return merged


def load_config(model: type[M], path: str | Path | None = None, overrides: Sequence[str] = ()) -> M:
    """Build ``model`` from its defaults, an optional YAML file and dotted overrides (later wins).

    Nested defaults are kept: overriding ``rollout.top_p`` leaves the other ``rollout`` fields at
    the values the model's defaults give them, not at their own class defaults.
    """
    try:
        defaults = model().model_dump()
    except ValidationError:  # the model has required fields: nothing to start from
        defaults = {}
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded or {}
    data = deep_merge(deep_merge(defaults, data), parse_overrides(overrides))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        source = f" (from {path})" if path else ""
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            + (
                f" (got {err['input']!r})"
                if err["type"] != "missing" and not isinstance(err["input"], dict)
                else ""
            )
            for err in exc.errors()
        ]
        raise ConfigError(f"invalid {model.__name__}{source}:\n" + "\n".join(lines)) from None
