"""Resolve user hooks given in configuration as ``"package.module:attribute"`` import paths."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

Named = TypeVar("Named", bound=Callable[..., Any])


def import_object(path: str) -> Any:
    """Import ``"package.module:attribute"`` (attribute may be dotted) and return the object.

    Raises ValueError naming the path and what is wrong with it.
    """
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"import path {path!r} must look like 'package.module:attribute'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"import path {path!r}: cannot import module {module_name!r} ({error})") from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as error:
            raise ValueError(
                f"import path {path!r}: {module_name!r} has no attribute {attribute!r}"
            ) from error
    return target


def builtin_or_import(name: str, builtins: Mapping[str, Named], kind: str) -> Named:
    """``builtins[name]``, or the function at import path ``name``; ValueError naming the choices
    (``kind`` says what is looked up, e.g. ``"metric"``)."""
    if name in builtins:
        return builtins[name]
    if ":" not in name:
        raise ValueError(
            f"unknown {kind} {name!r}: use one of {sorted(builtins)} or 'package.module:function'"
        )
    found = import_object(name)
    if not callable(found):
        raise ValueError(f"{kind} {name!r} is not callable")
    return found
