"""The calculator tool: the model writes CALC(<expression>) and gets the value back.

Model text is never evaluated by Python: the expression is parsed with `ast` and only
numbers, + - * / ** and parentheses (and unary minus/plus) are walked; anything else is
refused. Lengths, exponents and magnitudes are bounded so a hostile expression cannot
take the worker's time or memory.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable

MAX_EXPRESSION_CHARS = 120
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e30
MAX_DEPTH = 30

# CALC( then anything without a newline up to the ")" that balances it (one nesting level
# per group is enough for the regex to find the end; the parser checks the rest).
CALL = re.compile(r"CALC\(((?:[^()\n]|\((?:[^()\n]|\([^()\n]*\))*\))*)\)")

_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


class CalcError(ValueError):
    pass


def _walk(node: ast.AST, depth: int) -> float:
    if depth > MAX_DEPTH:
        raise CalcError("too deeply nested")
    if isinstance(node, ast.Expression):
        return _walk(node.body, depth + 1)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise CalcError("only numbers and + - * / ** ( ) are allowed, not a boolean")
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _walk(node.operand, depth + 1)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _walk(node.left, depth + 1)
        right = _walk(node.right, depth + 1)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalcError(f"exponent above {MAX_EXPONENT}")
        if isinstance(node.op, ast.Div) and right == 0:
            raise CalcError("division by zero")
        try:
            value = _BINARY[type(node.op)](left, right)
        except (OverflowError, ZeroDivisionError) as exc:
            raise CalcError(str(exc)) from exc
        if isinstance(value, complex) or not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
            raise CalcError("the result is out of range")
        return value
    raise CalcError(f"only numbers and + - * / ** ( ) are allowed, not {type(node).__name__}")


def evaluate(expression: str) -> float:
    """The value of an arithmetic expression, or CalcError saying why not."""
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    text = text.replace(",", "")  # thousands separators: "1,200"
    if not text:
        raise CalcError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CalcError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise CalcError("not an arithmetic expression") from exc
    return _walk(tree, 0)


def format_value(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def result_text(expression: str) -> str:
    """What is inserted after a CALC(...) call: " = 42", or " = error (why)"."""
    try:
        return f" = {format_value(evaluate(expression))}"
    except CalcError as exc:
        return f" = error ({exc})"
