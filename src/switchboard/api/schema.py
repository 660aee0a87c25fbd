"""The structure of every served kind, and Kubernetes' field validation against it.

`schema.json` (beside this module) is generated at development time by
`scripts/gen_schema.py` from the official `kubernetes` Python client; this
module only reads it, so the client is not a runtime dependency. The file
holds:

- `kinds`: one entry per (group, version, kind) with its definition name;
- `definitions`: per definition name (`io.k8s.api.core.v1.ServicePort`, as
  in Kubernetes' OpenAPI) a description, `required` fields and
  `properties`, each a `FieldSchema` whose `type` is one of

      string, integer (format int32|int64), number, boolean,
      date-time (format "micro" for metav1.MicroTime), quantity,
      int-or-string, array (items), map (values, keys are strings),
      object with "ref" (a nested definition),
      object without "ref" (free-form JSON kept as is: RawExtension, FieldsV1).

Field validation follows the apiserver's decoder (sigs.k8s.io/json), which
reports two families of problems differently:

- Type errors (a string where an int32 belongs) fail every request whatever
  the `fieldValidation` mode. Go's decoder keeps only the first one, worded
  `json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32`:
  the struct is the innermost Go struct and the path names JSON fields
  without list indices.
- Strict problems, `unknown field "spec.template.spec.containers[0].imagee"`
  and `duplicate field "spec.replicas"` (paths with list indices), in
  document order. `Strict` fails the request with all of them joined behind
  `strict decoding error: `; `Warn` (the default when the request names no
  mode) returns each as a warning; `Ignore` drops them. A key that is both
  unknown and repeated is reported once, as unknown. Duplicates exist only
  in the request text, so they are found only when `raw` is passed.

The 400 message wraps either: `decode_error_message(kind, api_version, detail)`
gives `Service in version "v1" cannot be handled as a Service: <detail>`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, NotRequired, TypedDict, cast

from switchboard.api import fielderrors

Mode = Literal["Strict", "Warn", "Ignore"]
MODES: tuple[Mode, ...] = ("Strict", "Warn", "Ignore")
# What the apiserver does when a request carries no fieldValidation parameter.
DEFAULT_MODE: Mode = "Warn"


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


class KindEntry(TypedDict):
    group: str
    version: str
    kind: str
    definition: str


class _Document(TypedDict):
    kinds: list[KindEntry]
    definitions: dict[str, Definition]


class UnknownKind(LookupError):
    """No schema for this kind; a programming error, not a client's."""


@functools.cache
def _document() -> _Document:
    text = resources.files("switchboard.api").joinpath("schema.json").read_text(encoding="utf-8")
    return cast(_Document, json.loads(text))


def definitions() -> Mapping[str, Definition]:
    return _document()["definitions"]


def kinds() -> Sequence[KindEntry]:
    return _document()["kinds"]


def definition_name(kind: str, api_version: str | None = None) -> str:
    """The definition of `kind`; `api_version` ("events.k8s.io/v1") picks among same-named kinds."""
    for entry in kinds():
        if entry["kind"] != kind:
            continue
        if api_version is None or api_version == _api_version(entry):
            return entry["definition"]
    where = f" in {api_version}" if api_version else ""
    raise UnknownKind(f"no schema for kind {kind}{where}: run scripts/gen_schema.py")


def _api_version(entry: KindEntry) -> str:
    return f"{entry['group']}/{entry['version']}" if entry["group"] else entry["version"]


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

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

# k8s.io/apimachinery/pkg/api/resource: the shape a Quantity string must have.
_QUANTITY_SHAPE = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QUANTITY = re.compile(_QUANTITY_SHAPE)
_QUANTITY_SUFFIXES = frozenset(
    {"", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
)
_DECIMAL_EXPONENT = re.compile(r"^[eE][-+]?[0-9]+$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_RFC3339_LAYOUT = "2006-01-02T15:04:05Z07:00"


class _Pairs:
    """A JSON object as written, duplicate keys kept: only `raw` parsing makes these."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


class _FloatLiteral(float):
    """A JSON number as written, so errors can quote `1e3` the way Go does."""

    text: str

    def __new__(cls, text: str) -> _FloatLiteral:
        value = super().__new__(cls, text)
        value.text = text
        return value


def _items(value: Any) -> Iterable[tuple[str, Any]]:
    return value.pairs if isinstance(value, _Pairs) else cast(dict[str, Any], value).items()


def _is_object(value: Any) -> bool:
    return isinstance(value, dict | _Pairs)


def _json_kind(value: Any) -> str:
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


def _number_text(value: int | float) -> str:
    return value.text if isinstance(value, _FloatLiteral) else repr(value)


def _int_problem(value: Any, fmt: str) -> str | None:
    """The `cannot unmarshal <what>` part when `value` is no integer of width `fmt`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _json_kind(value)
    low, high = _INT_RANGES.get(fmt, _INT_RANGES["int64"])
    if isinstance(value, float) or not low <= value <= high:
        return f"number {_number_text(value)}"
    return None


def _quantity_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return f"quantities must match the regular expression '{_QUANTITY_SHAPE}'"
    text = value.strip() if isinstance(value, str) else _number_text(value)
    match = _QUANTITY.match(text)
    if match is None:
        return f"quantities must match the regular expression '{_QUANTITY_SHAPE}'"
    number, suffix = match.groups()
    if number.count(".") > 1 or number.strip("+-") == ".":
        return "unable to parse numeric part of quantity"
    if suffix not in _QUANTITY_SUFFIXES and not _DECIMAL_EXPONENT.match(suffix):
        return "unable to parse quantity's suffix"
    return None


@dataclass(slots=True)
class _Walk:
    """One pass over an object: type errors (Go's wording) and strict problems, in order."""

    defs: Mapping[str, Definition]
    type_errors: list[str] = field(default_factory=list)
    strict: list[str] = field(default_factory=list)

    def struct(self, def_name: str, value: Any, path: str, go_path: str) -> None:
        properties = self.defs[def_name]["properties"]
        struct_name = def_name.rpartition(".")[2]
        seen: set[str] = set()
        for key, item in _items(value):
            field_path = f"{path}.{key}" if path else key
            schema = properties.get(key)
            if schema is None:
                if key not in seen:
                    self.strict.append(f'unknown field "{field_path}"')
            elif key in seen:
                self.strict.append(f'duplicate field "{field_path}"')
            seen.add(key)
            if schema is not None:
                field_go_path = f"{go_path}.{key}" if go_path else key
                self.value(schema, item, field_path, field_go_path, struct_name)

    def value(self, schema: FieldSchema, item: Any, path: str, go_path: str, owner: str) -> None:
        if item is None:  # Go leaves the zero value for null, whatever the type
            return

        def mismatch(what: str, go: str | None = None) -> None:
            self.type_errors.append(
                f"json: cannot unmarshal {what} into Go struct field {owner}.{go_path}"
                f" of type {go or go_type(schema)}"
            )

        kind = schema["type"]
        if kind == "string":
            if not isinstance(item, str):
                mismatch(_json_kind(item))
        elif kind == "integer":
            problem = _int_problem(item, schema.get("format", "int64"))
            if problem:
                mismatch(problem)
        elif kind == "number":
            if isinstance(item, bool) or not isinstance(item, int | float):
                mismatch(_json_kind(item))
        elif kind == "boolean":
            if not isinstance(item, bool):
                mismatch(_json_kind(item))
        elif kind == "int-or-string":
            # IntOrString takes any JSON string, else decodes the value as an int32.
            problem = None if isinstance(item, str) else _int_problem(item, "int32")
            if problem:
                mismatch(problem, "int32")
        elif kind == "quantity":
            problem = _quantity_problem(item)
            if problem:
                self.type_errors.append(problem)
        elif kind == "date-time":
            # metav1.Time and MicroTime decode a JSON string, then parse it as RFC 3339.
            if not isinstance(item, str):
                mismatch(_json_kind(item), "string")
            elif not _RFC3339.match(item):
                self.type_errors.append(
                    f"parsing time {json.dumps(item)} as {json.dumps(_RFC3339_LAYOUT)}:"
                    f" cannot parse {json.dumps(item)} as {json.dumps(_RFC3339_LAYOUT[:4])}"
                )
        elif kind == "array":
            if not isinstance(item, list):
                mismatch(_json_kind(item))
                return
            for index, element in enumerate(item):
                self.value(schema["items"], element, f"{path}[{index}]", go_path, owner)
        elif kind == "map":
            if not _is_object(item):
                mismatch(_json_kind(item))
                return
            seen: set[str] = set()
            for key, element in _items(item):
                if key in seen:
                    self.strict.append(f'duplicate field "{path}.{key}"')
                seen.add(key)
                self.value(schema["values"], element, f"{path}.{key}", go_path, owner)
        elif kind == "object" and "ref" in schema:
            if not _is_object(item):
                mismatch(_json_kind(item))
                return
            self.struct(schema["ref"], item, path, go_path)
        # A free-form object (RawExtension, FieldsV1) takes any JSON value.


def _parse_raw(raw: bytes | str, obj: Any) -> Any:
    """The request text with duplicate keys kept; `obj` itself if the text is not JSON."""
    try:
        return json.loads(raw, object_pairs_hook=_Pairs, parse_float=_FloatLiteral)
    except ValueError:
        return obj


def _definition_for(kind: str, tree: Any, api_version: str | None) -> str:
    if api_version is None and _is_object(tree):
        # events.k8s.io/v1 and v1 both have an Event: the object says which it is.
        declared = next((v for k, v in _items(tree) if k == "apiVersion"), None)
        if isinstance(declared, str):
            try:
                return definition_name(kind, declared)
            except UnknownKind:
                pass
    return definition_name(kind, api_version)


def _walk(kind: str, obj: Any, api_version: str | None, raw: bytes | str | None) -> _Walk:
    tree = obj if raw is None else _parse_raw(raw, obj)
    def_name = _definition_for(kind, tree, api_version)
    walk = _Walk(definitions())
    if not _is_object(tree):
        package, _, name = def_name.rpartition(".")
        walk.type_errors.append(
            f"json: cannot unmarshal {_json_kind(tree)} into Go value of type"
            f" {package.rpartition('.')[2]}.{name}"
        )
        return walk
    walk.struct(def_name, tree, "", "")
    return walk


def type_errors(kind: str, obj: Any, *, api_version: str | None = None) -> list[str]:
    """Every value whose JSON type the kind's Go type cannot take; Kubernetes reports the first."""
    return _walk(kind, obj, api_version, None).type_errors


def strict_problems(
    kind: str, obj: Any, *, api_version: str | None = None, raw: bytes | str | None = None
) -> list[str]:
    """Unknown (and, given the request text, duplicate) fields, in document order."""
    return _walk(kind, obj, api_version, raw).strict


def check(
    kind: str,
    obj: Any,
    mode: Mode,
    *,
    api_version: str | None = None,
    raw: bytes | str | None = None,
) -> tuple[list[str], list[str]]:
    """Field validation of a decoded object: (errors, warnings).

    `errors` is empty or holds the one detail the apiserver would fail the
    request with: the first type error (in every mode), else under Strict
    `strict decoding error: unknown field "spec.foo", ...`. Under Warn,
    `warnings` holds each strict problem, one per Warning header. Pass the
    request body as `raw` to also find duplicate fields (a body that is not
    JSON, such as YAML, is ignored). Without
    `api_version`, the object's own apiVersion picks among same-named kinds.
    """
    walk = _walk(kind, obj, api_version, raw)
    if walk.type_errors:
        return walk.type_errors[:1], []
    if mode == "Strict" and walk.strict:
        return ["strict decoding error: " + ", ".join(walk.strict)], []
    if mode == "Warn":
        return [], walk.strict
    return [], []


def without_unknown(kind: str, obj: Any, *, api_version: str | None = None) -> Any:
    """`obj` without the fields its kind's Go types lack, as the apiserver stores it.

    The apiserver decodes into Go structs, so under Warn and Ignore an unknown
    field is not only reported (or not) but gone: it is never stored and never
    read back. Values of the wrong type are left as they are; `check` fails the
    request on them first.
    """
    if not isinstance(obj, dict):
        return obj
    defs = definitions()
    return _known_struct(defs, _definition_for(kind, obj, api_version), obj)


def _known_struct(defs: Mapping[str, Definition], def_name: str, value: dict[str, Any]) -> Any:
    properties = defs[def_name]["properties"]
    return {
        key: _known_value(defs, properties[key], item)
        for key, item in value.items()
        if key in properties
    }


def _known_value(defs: Mapping[str, Definition], schema: FieldSchema, item: Any) -> Any:
    kind = schema["type"]
    if kind == "array" and isinstance(item, list):
        return [_known_value(defs, schema["items"], element) for element in item]
    if kind == "map" and isinstance(item, dict):
        return {key: _known_value(defs, schema["values"], v) for key, v in item.items()}
    if kind == "object" and "ref" in schema and isinstance(item, dict):
        return _known_struct(defs, schema["ref"], item)
    return item


def decode_error_message(kind: str, api_version: str, detail: str) -> str:
    """`Service in version "v1" cannot be handled as a Service: <detail>`."""
    version = api_version.rpartition("/")[2]
    return f'{kind} in version "{version}" cannot be handled as a {kind}: {detail}'


def parse_mode(value: str | None) -> Mode:
    """The `fieldValidation` query parameter as a mode; absent or empty means Warn."""
    if not value:
        return DEFAULT_MODE
    for mode in MODES:
        if value == mode:
            return mode
    supported = ["", "Ignore", "Strict", "Warn"]
    raise ValueError(str(fielderrors.not_supported("fieldValidation", value, supported)))
