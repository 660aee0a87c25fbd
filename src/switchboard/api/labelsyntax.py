"""The label selector grammar: a `labelSelector` string read as Go reads it.

A hand-written lexer and recursive-descent parser after
k8s.io/apimachinery/pkg/labels, over the grammar

    selector    ::= requirement ("," requirement)*
    requirement ::= ["!"] KEY [ set-based | exact ]
    set-based   ::= ("in" | "notin") "(" VALUE ("," VALUE)* ")"
    exact       ::= ("=" | "==" | "!=" | ">" | "<") VALUE

with error messages worded as the Go parser words them (`unable to parse
requirement: ...`, `found 'x', expected: ...`), because kubectl shows them
verbatim.

Only the syntax lives here, and the check that a key is a qualified name,
which Go makes while parsing. Each requirement read is handed to the
caller's `build(key, operator, values)` (operators spelled as
k8s.io/apimachinery/pkg/selection spells them: "in", "notin", "=", "==",
"!=", "gt", "lt", "exists", "!"), which validates it; a ValueError it raises
becomes that requirement's parse error. Errors are `LabelSyntaxError`, which
`selectors` answers as its own `SelectorError`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Generic, TypeVar

from switchboard.api import fielderrors, validation

_R = TypeVar("_R")
Build = Callable[[str, str, list[str]], _R]


class LabelSyntaxError(ValueError):
    """A label selector that does not parse, or a requirement `build` refused."""


def parse(text: str, build: Build[_R]) -> list[_R]:
    """The requirements of a label selector, in the order written; "" has none."""
    return _Parser(text, build).parse()


_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"


class _Tok(enum.Enum):
    ERROR = enum.auto()
    END = enum.auto()
    CLOSE_PAR = enum.auto()
    COMMA = enum.auto()
    NOT = enum.auto()
    DOUBLE_EQUALS = enum.auto()
    EQUALS = enum.auto()
    GREATER_THAN = enum.auto()
    IDENTIFIER = enum.auto()
    IN = enum.auto()
    LESS_THAN = enum.auto()
    NOT_EQUALS = enum.auto()
    NOT_IN = enum.auto()
    OPEN_PAR = enum.auto()


_LITERALS = {
    ")": _Tok.CLOSE_PAR,
    ",": _Tok.COMMA,
    "!": _Tok.NOT,
    "==": _Tok.DOUBLE_EQUALS,
    "=": _Tok.EQUALS,
    ">": _Tok.GREATER_THAN,
    "in": _Tok.IN,
    "<": _Tok.LESS_THAN,
    "!=": _Tok.NOT_EQUALS,
    "notin": _Tok.NOT_IN,
    "(": _Tok.OPEN_PAR,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
# Operators as k8s.io/apimachinery/pkg/selection spells them.
_TOKEN_OPERATORS = {
    _Tok.IN: "in",
    _Tok.EQUALS: "=",
    _Tok.DOUBLE_EQUALS: "==",
    _Tok.GREATER_THAN: "gt",
    _Tok.LESS_THAN: "lt",
    _Tok.NOT_IN: "notin",
    _Tok.NOT_EQUALS: "!=",
}
_EXISTS = "exists"
_DOES_NOT_EXIST = "!"


def _lex(text: str) -> list[tuple[_Tok, str]]:
    """Split a label selector into tokens, ending with END (the Go lexer, minus its cursor)."""
    tokens: list[tuple[_Tok, str]] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            tokens.append((_Tok.END, ""))
            return tokens
        if text[pos] in _SPECIAL:
            # Longest operator that is a prefix of the run of special characters.
            buffer, last, end = "", None, pos
            while end < n and text[end] in _SPECIAL:
                buffer += text[end]
                tok = _LITERALS.get(buffer)
                if tok is not None:
                    last = (tok, buffer)
                elif last is not None:
                    break
                end += 1
            if last is None:
                tokens.append((_Tok.ERROR, f"error expected: keyword found '{buffer}'"))
                pos = end
            else:
                tokens.append(last)
                pos += len(last[1])
            continue
        start = pos
        while pos < n and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
            pos += 1
        word = text[start:pos]
        tokens.append((_LITERALS.get(word, _Tok.IDENTIFIER), word))


class _Parser(Generic[_R]):
    """Recursive descent over the tokens; `in`/`notin` read as identifiers in value position."""

    def __init__(self, text: str, build: Build[_R]) -> None:
        self._tokens = _lex(text)
        self._pos = 0
        self._build = build

    def _peek(self, values: bool = True) -> tuple[_Tok, str]:
        tok, lit = self._tokens[min(self._pos, len(self._tokens) - 1)]
        if values and tok in (_Tok.IN, _Tok.NOT_IN):
            tok = _Tok.IDENTIFIER
        return tok, lit

    def _next(self, values: bool = True) -> tuple[_Tok, str]:
        item = self._peek(values)
        self._pos += 1
        return item

    def parse(self) -> list[_R]:
        reqs: list[_R] = []
        while True:
            tok, lit = self._peek()
            if tok in (_Tok.IDENTIFIER, _Tok.NOT):
                try:
                    reqs.append(self._requirement())
                except ValueError as exc:  # ours, or what `build` refused
                    raise LabelSyntaxError(f"unable to parse requirement: {exc}") from None
                tok, lit = self._next()
                if tok is _Tok.END:
                    return reqs
                if tok is not _Tok.COMMA:
                    raise LabelSyntaxError(f"found '{lit}', expected: ',' or 'end of string'")
                tok2, lit2 = self._peek()
                if tok2 not in (_Tok.IDENTIFIER, _Tok.NOT):
                    raise LabelSyntaxError(f"found '{lit2}', expected: identifier after ','")
            elif tok is _Tok.END:
                return reqs
            else:
                raise LabelSyntaxError(
                    f"found '{lit}', expected: !, identifier, or 'end of string'"
                )

    def _requirement(self) -> _R:
        key, inferred = self._key_and_inferred_operator()
        if inferred is not None:
            return self._build(key, inferred, [])
        operator = self._operator()
        values = self._value_set() if operator in ("in", "notin") else self._exact_value()
        return self._build(key, operator, sorted(values))

    def _key_and_inferred_operator(self) -> tuple[str, str | None]:
        operator: str | None = None
        tok, lit = self._next()
        if tok is _Tok.NOT:
            operator = _DOES_NOT_EXIST
            tok, lit = self._next()
        if tok is not _Tok.IDENTIFIER:
            raise LabelSyntaxError(f"found '{lit}', expected: identifier")
        key_errors = validation.is_qualified_name(lit)
        if key_errors:
            # The Go parser validates with a nil field path, which prints as <nil>.
            raise LabelSyntaxError(str(fielderrors.invalid("<nil>", lit, "; ".join(key_errors))))
        if self._peek()[0] in (_Tok.END, _Tok.COMMA) and operator is None:
            operator = _EXISTS
        return lit, operator

    def _operator(self) -> str:
        tok, lit = self._next(values=False)
        operator = _TOKEN_OPERATORS.get(tok)
        if operator is None:
            raise LabelSyntaxError(f"found '{lit}', expected: {_BINARY_OPERATORS}")
        return operator

    def _value_set(self) -> set[str]:
        tok, lit = self._next()
        if tok is not _Tok.OPEN_PAR:
            raise LabelSyntaxError(f"found '{lit}' expected: '('")
        tok, lit = self._peek()
        if tok in (_Tok.IDENTIFIER, _Tok.COMMA):
            values = self._identifiers()
            if self._next()[0] is not _Tok.CLOSE_PAR:
                raise LabelSyntaxError(f"found '{lit}', expected: ')'")
            return values
        if tok is _Tok.CLOSE_PAR:
            self._next()
            return {""}
        raise LabelSyntaxError(f"found '{lit}', expected: ',', ')' or identifier")

    def _identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self._next()
            if tok is _Tok.IDENTIFIER:
                values.add(lit)
                tok2, lit2 = self._peek()
                if tok2 is _Tok.COMMA:
                    continue
                if tok2 is _Tok.CLOSE_PAR:
                    return values
                raise LabelSyntaxError(f"found '{lit2}', expected: ',' or ')'")
            if tok is _Tok.COMMA:
                # Empty values are legal: "(,a)", "(a,)" and "(a,,b)" all include "".
                if not values:
                    values.add("")
                tok2, _ = self._peek()
                if tok2 is _Tok.CLOSE_PAR:
                    values.add("")
                    return values
                if tok2 is _Tok.COMMA:
                    self._next()
                    values.add("")
                continue
            raise LabelSyntaxError(f"found '{lit}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        tok, _ = self._peek()
        if tok in (_Tok.END, _Tok.COMMA):
            return {""}
        tok, lit = self._next()
        if tok is _Tok.IDENTIFIER:
            return {lit}
        raise LabelSyntaxError(f"found '{lit}', expected: identifier")
