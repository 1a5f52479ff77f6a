"""A typed Python function as a tool ({function: "module:function"}), as TRL and chat templates take them."""

from __future__ import annotations

import pytest

from arpo.tools import ToolStatus
from arpo.tools.registry import ToolSpecError, build_toolbox


def convert(value: float, unit: str) -> float:
    """Convert a length to metres.

    Args:
        value: The length.
        unit: Its unit, km or cm.
    """
    return value * {"km": 1000.0, "cm": 0.01}[unit]


def square(x: int) -> dict:
    """Square an integer.

    Args:
        x: The integer.
    """
    return {"square": x * x}


def undocumented(x):
    return x


def test_functions_are_tools_with_their_schema_and_errors_the_model_sees():
    specs = [{"function": f"{__name__}:convert"}, {"function": f"{__name__}:square", "tag": "sq"}]
    with build_toolbox(specs) as box:
        assert box.tags == ["convert", "sq"]
        (convert_schema, square_schema) = box.schemas()
        assert convert_schema["function"] == {
            "name": "convert",
            "description": "Convert a length to metres.",
            "parameters": {
                "type": "object",
                "properties": {
                    "value": {"type": "number", "description": "The length."},
                    "unit": {"type": "string", "description": "Its unit, km or cm."},
                },
                "required": ["value", "unit"],
            },
        }
        assert square_schema["function"]["name"] == "sq"
        results = box.run_many(
            [
                ("convert", '{"value": 2, "unit": "km"}'),
                ("sq", " 12 "),
                ("convert", '{"value": 2, "unit": "mile"}'),
                ("convert", '{"value": 2}'),
                ("sq", "twelve"),
            ]
        )
        assert [r.text for r in results[:2]] == ["2000.0", '{"square": 144}']
        assert [r.status for r in results] == [ToolStatus.OK] * 2 + [ToolStatus.ERROR] * 3
        assert results[2].text == "convert failed: KeyError: 'mile'"
        assert "missing a required argument: 'unit'" in results[3].text
        assert "x must be of type integer" in results[4].text
        # a native call's arguments become the text the tool reads, and back
        tool = box.get("sq")
        assert tool.parse_call(tool.call_text({"x": 5})) == {"x": 5}


def test_a_function_without_hints_or_docstring_is_refused():
    with pytest.raises(ToolSpecError, match="'undocumented' cannot be a tool"):
        build_toolbox([{"function": f"{__name__}:undocumented"}])
