"""How a value meets its field's schema: Go's types, their decoding rules, and fast tables.

`schema` checks request bodies the way kube-apiserver's decoder does; this
module holds what that check applies to one value. `FieldSchema` is one
field's entry in the schema document; `go_type` names the Go type it decodes
into; `json_kind`, `int_problem` and `quantity_problem` word a value that
does not fit as Go's errors word it.

The tables are compiled once per definitions document, for the common case.
`clean_tables` give a clean-or-not test per field: nearly every request body
is clean, and this test says so without building any report. It may say
"not clean" of a body that is (a float where a quantity belongs, a subclass
of dict), never the reverse, and whatever it refuses goes the full way
(`schema._Walk`). `known_tables` give, per field, what keeping only the
fields the Go types know makes of a value (`schema.without_unknown`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NotRequired, TypedDict


class FieldSchema(TypedDict):
    type: str
    format: NotRequired[str]
    ref: NotRequired[str]
    items: NotRequired[FieldSchema]
    values: NotRequired[FieldSchema]
    description: NotRequired[str]


class Definition(TypedDict):
    description: str
    properties: dict[str, FieldSchema]
    required: NotRequired[list[str]]


def go_type(schema: FieldSchema) -> str:
    """The Go type Kubernetes decodes this field into, as Go's errors print it."""
    kind = schema["type"]
    if kind == "object" and "ref" in schema:
        package, _, name = schema["ref"].rpartition(".")
        return f"{package.rpartition('.')[2]}.{name}"
    if kind == "array":
        return "[]" + go_type(schema["items"])
    if kind == "map":
        return "map[string]" + go_type(schema["values"])
    if kind == "integer":
        return schema.get("format", "int64")
    if kind == "date-time":
        return "v1.MicroTime" if schema.get("format") == "micro" else "v1.Time"
    return _GO_SCALARS[kind]


_GO_SCALARS = {
    "string": "string",
    "number": "float64",
    "boolean": "bool",
    "quantity": "resource.Quantity",
    "int-or-string": "intstr.IntOrString",
    "object": "map[string]interface {}",
}

INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

# k8s.io/apimachinery/pkg/api/resource: the shape a Quantity string must have.
QUANTITY_SHAPE = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QUANTITY = re.compile(QUANTITY_SHAPE)
_QUANTITY_SUFFIXES = frozenset(
    {"", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
)
_DECIMAL_EXPONENT = re.compile(r"^[eE][-+]?[0-9]+$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
RFC3339_LAYOUT = "2006-01-02T15:04:05Z07:00"


class FloatLiteral(float):
    """A JSON number as written, so errors can quote `1e3` the way Go does."""

    text: str

    def __new__(cls, text: str) -> FloatLiteral:
        value = super().__new__(cls, text)
        value.text = text
        return value


def json_kind(value: Any) -> str:
    """How Go's decoder names a JSON value in `cannot unmarshal <kind>`."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


def number_text(value: int | float) -> str:
    return value.text if isinstance(value, FloatLiteral) else repr(value)


def int_problem(value: Any, fmt: str) -> str | None:
    """The `cannot unmarshal <what>` part when `value` is no integer of width `fmt`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return json_kind(value)
    low, high = INT_RANGES.get(fmt, INT_RANGES["int64"])
    if isinstance(value, float) or not low <= value <= high:
        return f"number {number_text(value)}"
    return None


def quantity_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return f"quantities must match the regular expression '{QUANTITY_SHAPE}'"
    text = value.strip() if isinstance(value, str) else number_text(value)
    match = _QUANTITY.match(text)
    if match is None:
        return f"quantities must match the regular expression '{QUANTITY_SHAPE}'"
    number, suffix = match.groups()
    if number.count(".") > 1 or number.strip("+-") == ".":
        return "unable to parse numeric part of quantity"
    if suffix not in _QUANTITY_SUFFIXES and not _DECIMAL_EXPONENT.match(suffix):
        return "unable to parse quantity's suffix"
    return None


# ---- clean or not: what almost every request needs ------------------------------------------

# True when a (non-null) value gives no problem; None in a table: any value does.
Clean = Callable[[Any], bool]


def _clean_string(value: Any) -> bool:
    return type(value) is str


def _clean_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _clean_boolean(value: Any) -> bool:
    return value is True or value is False


def _clean_int(low: int, high: int) -> Clean:
    def clean(value: Any) -> bool:
        return type(value) is int and low <= value <= high

    return clean


def _clean_int_or_string(value: Any) -> bool:
    return type(value) is str or (type(value) is int and -(2**31) <= value <= 2**31 - 1)


def _clean_quantity(value: Any) -> bool:
    # A float's text as written decides; only the full walk has it.
    return (type(value) is str or type(value) is int) and quantity_problem(value) is None


def _clean_date_time(value: Any) -> bool:
    return type(value) is str and RFC3339.match(value) is not None


def _clean_array(items: Clean | None) -> Clean:
    def clean(value: Any) -> bool:
        if type(value) is not list:
            return False
        if items is not None:
            for item in value:
                if item is not None and not items(item):
                    return False
        return True

    return clean


def _clean_map(values: Clean | None) -> Clean:
    def clean(value: Any) -> bool:
        if type(value) is not dict:
            return False
        if values is _clean_string:  # labels, selectors, annotations: inlined
            for item in value.values():
                if type(item) is not str and item is not None:
                    return False
        elif values is not None:
            for item in value.values():
                if item is not None and not values(item):
                    return False
        return True

    return clean


def _clean_ref(tables: Mapping[str, Mapping[str, Clean | None]], ref: str) -> Clean:
    def clean(value: Any) -> bool:
        return type(value) is dict and clean_struct(tables[ref], value)

    return clean


def _unknown(value: Any) -> bool:
    return False


def clean_struct(table: Mapping[str, Clean | None], value: dict[str, Any]) -> bool:
    for key, item in value.items():
        check = table.get(key, _unknown)
        if check is _clean_string:  # the commonest field, inlined
            if type(item) is not str and item is not None:
                return False
        elif check is _unknown or (check is not None and item is not None and not check(item)):
            return False
    return True


def _clean_check(
    tables: Mapping[str, Mapping[str, Clean | None]], schema: FieldSchema
) -> Clean | None:
    """What `_Walk.value` accepts without a word, as a test of one value; None for anything."""
    kind = schema["type"]
    if kind == "string":
        return _clean_string
    if kind == "integer":
        return _clean_int(*INT_RANGES.get(schema.get("format", "int64"), INT_RANGES["int64"]))
    if kind == "number":
        return _clean_number
    if kind == "boolean":
        return _clean_boolean
    if kind == "int-or-string":
        return _clean_int_or_string
    if kind == "quantity":
        return _clean_quantity
    if kind == "date-time":
        return _clean_date_time
    if kind == "array":
        return _clean_array(_clean_check(tables, schema["items"]))
    if kind == "map":
        return _clean_map(_clean_check(tables, schema["values"]))
    if kind == "object" and "ref" in schema:
        return _clean_ref(tables, schema["ref"])
    return None  # a free-form object


def clean_tables(definitions: Mapping[str, Definition]) -> Mapping[str, Mapping[str, Clean | None]]:
    """Per definition, per field: its test (references are looked up when first needed)."""
    tables: dict[str, dict[str, Clean | None]] = {}
    for name, definition in definitions.items():
        tables[name] = {
            key: _clean_check(tables, spec) for key, spec in definition["properties"].items()
        }
    return tables


# Per field, what a known value becomes; None: the value as it is (a scalar, free-form JSON).
Known = Callable[[Any], Any]


def _drop(value: Any) -> Any:
    """Never called: the marker of a field the definition lacks."""
    return value


def known_struct(table: Mapping[str, Known | None], value: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, item in value.items():
        known = table.get(key, _drop)
        if known is None:
            out[key] = item
        elif known is not _drop:
            out[key] = known(item)
    return out


def _known_array(items: Known | None) -> Known:
    def known(value: Any) -> Any:
        if not isinstance(value, list):
            return value
        if items is None:
            return [item for item in value]  # a list, even of a subclass
        return [items(item) for item in value]

    return known


def _known_map(values: Known | None) -> Known:
    def known(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if values is None:
            return {key: item for key, item in value.items()}  # as items() gives them
        return {key: values(item) for key, item in value.items()}

    return known


def _known_ref(tables: Mapping[str, Mapping[str, Known | None]], ref: str) -> Known:
    def known(value: Any) -> Any:
        return known_struct(tables[ref], value) if isinstance(value, dict) else value

    return known


def _known_value(
    tables: Mapping[str, Mapping[str, Known | None]], schema: FieldSchema
) -> Known | None:
    kind = schema["type"]
    if kind == "array":
        return _known_array(_known_value(tables, schema["items"]))
    if kind == "map":
        return _known_map(_known_value(tables, schema["values"]))
    if kind == "object" and "ref" in schema:
        return _known_ref(tables, schema["ref"])
    return None


def known_tables(definitions: Mapping[str, Definition]) -> Mapping[str, Mapping[str, Known | None]]:
    """Per definition, per field: what `schema.without_unknown` makes of its value."""
    tables: dict[str, dict[str, Known | None]] = {}
    for name, definition in definitions.items():
        tables[name] = {
            key: _known_value(tables, spec) for key, spec in definition["properties"].items()
        }
    return tables
