"""Field errors, worded as Kubernetes words them (k8s.io/apimachinery/pkg/util/validation/field).

A validator returns a list of `FieldError`; the apiserver turns a non-empty
list into a 422 Invalid Status whose message joins `str(error)` for each and
whose details.causes carry (reason, message, field). `str(error)` is
`<field>: <body>`, e.g. `spec.ports[0].name: Required value`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    reason: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, ...
    field: str
    body: str  # "Required value", "Invalid value: \"x\": must be ...", ...

    def __str__(self) -> str:
        return f"{self.field}: {self.body}" if self.field else self.body


def _quote(value: Any) -> str:
    """Render a bad value the way Go's field errors do: strings quoted, numbers bare."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), default=str)


def required(path: str, detail: str = "") -> FieldError:
    body = "Required value" + (f": {detail}" if detail else "")
    return FieldError("FieldValueRequired", path, body)


def invalid(path: str, value: Any, detail: str = "") -> FieldError:
    body = f"Invalid value: {_quote(value)}" + (f": {detail}" if detail else "")
    return FieldError("FieldValueInvalid", path, body)


def not_supported(path: str, value: Any, supported: Iterable[str]) -> FieldError:
    body = f"Unsupported value: {_quote(value)}"
    values = list(supported)
    if values:
        body += ": supported values: " + ", ".join(json.dumps(v) for v in values)
    return FieldError("FieldValueNotSupported", path, body)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", path, f"Duplicate value: {_quote(value)}")


def invalid_go(path: str, rendered: str, detail: str = "") -> FieldError:
    """`invalid` for a value Go prints with %#v (a slice or struct), rendered by the caller.

    Kubernetes shows e.g. `Invalid value: []string{"10.0.0.1"}` for a list; JSON
    quoting cannot produce that, so the caller passes the Go rendering as is.
    """
    body = f"Invalid value: {rendered}" + (f": {detail}" if detail else "")
    return FieldError("FieldValueInvalid", path, body)


def duplicate_go(path: str, rendered: str) -> FieldError:
    """`duplicate` for a value Go prints with %#v (a struct), rendered by the caller."""
    return FieldError("FieldValueDuplicate", path, f"Duplicate value: {rendered}")


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, f"Forbidden: {detail}")


def too_many(path: str, actual: int, limit: int) -> FieldError:
    return FieldError(
        "FieldValueTooMany", path, f"Too many: {actual}: must have at most {limit} items"
    )


def too_long(path: str, limit: int) -> FieldError:
    return FieldError("FieldValueTooLong", path, f"Too long: may not be more than {limit} bytes")


def not_found(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueNotFound", path, f"Not found: {_quote(value)}")


def internal(path: str, detail: str) -> FieldError:
    return FieldError("InternalError", path, f"Internal error: {detail}")


def message(kind: str, name: str, errors: list[FieldError]) -> str:
    """The Status message for a 422: `Service "x" is invalid: a` or `...: [a, b]`."""
    rendered = [str(e) for e in errors]
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    return f'{kind} "{name}" is invalid: {joined}'
