"""A deterministic arithmetic tool: ``<calc>12*(3+4)</calc>`` → ``84``.

It evaluates one arithmetic expression over integers and decimals with ``+ - * / // % **`` and
parentheses by walking the Python AST (no ``eval``, no names, no calls), so it is safe on any
input and needs no sandbox. Exponents are capped so ``9**9**9`` cannot exhaust memory. It is the
small, dependable tool used by tests and the rollout example; the sandboxed Python interpreter is
the general-purpose code tool.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any, ClassVar

from arpo.tools.base import Tool, ToolResult, ToolStatus

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class CalculatorError(ValueError):
    """The expression is not plain arithmetic or cannot be evaluated."""


class Calculator(Tool):
    """Evaluate an arithmetic expression exactly (integers stay integers)."""

    tag = "calc"
    description = (
        "calc: evaluates one arithmetic expression with + - * / // % ** and parentheses, "
        "e.g. <calc>(17*23)+5</calc>, and returns the number."
    )
    function_description = (
        "Evaluates one arithmetic expression with + - * / // % ** and parentheses and returns the number."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "The expression, e.g. (17*23)+5."}},
        "required": ["expression"],
    }

    def __init__(self, max_exponent: int = 64, max_digits: int = 200) -> None:
        super().__init__()
        self.max_exponent = max_exponent
        self.max_digits = max_digits

    def run(self, call: str) -> ToolResult:
        try:
            value = self.evaluate(call)
        except CalculatorError as exc:
            return ToolResult(f"error: {exc}", ToolStatus.ERROR)
        return ToolResult(_format_number(value))

    def evaluate(self, expression: str) -> float:
        """Value of ``expression``; raises :class:`CalculatorError` with a short reason."""
        text = expression.strip()
        if not text:
            raise CalculatorError("empty expression")
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError:
            raise CalculatorError("not an arithmetic expression") from None
        return self._eval(tree.body)

    def _eval(self, node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self._eval(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self._eval(node.left), self._eval(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > self.max_exponent:
                raise CalculatorError(f"exponent larger than {self.max_exponent}")
            try:
                value = _BINARY[type(node.op)](left, right)
            except ZeroDivisionError:
                raise CalculatorError("division by zero") from None
            except OverflowError:
                raise CalculatorError("result too large") from None
            if isinstance(value, complex):
                raise CalculatorError("complex result")
            if isinstance(value, int) and abs(value).bit_length() > self.max_digits * 3.33:
                raise CalculatorError(f"result longer than {self.max_digits} digits")
            return value
        raise CalculatorError("only numbers, + - * / // % ** and parentheses are allowed")


def _format_number(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)
