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

Every write passes through here, and nearly every body is clean, so the
report is built only for a body that is not. A clean-or-not check compiled
once per definition (`schemavalues.clean_tables`) runs first; it may say
"not clean" of a body that is (a float where a quantity belongs, a subclass
of dict), never the reverse, and whatever it refuses goes the full way. The
request text is parsed again, keeping duplicate keys, only when it can hold
any: a text that is byte for byte what orjson writes for the decoded object
has none, since orjson writes each key of a dict once and decoding it gives
back the same object.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, TypedDict, cast

import orjson

from switchboard.api import fielderrors, schemavalues
from switchboard.api.schemavalues import Definition as Definition
from switchboard.api.schemavalues import FieldSchema as FieldSchema

Mode = Literal["Strict", "Warn", "Ignore"]
MODES: tuple[Mode, ...] = ("Strict", "Warn", "Ignore")
# What the apiserver does when a request carries no fieldValidation parameter.
DEFAULT_MODE: Mode = "Warn"


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


@functools.cache  # only names found are kept, so at most a few per served kind
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


class _Pairs:
    """A JSON object as written, duplicate keys kept: only `raw` parsing makes these."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def _items(value: Any) -> Iterable[tuple[str, Any]]:
    return value.pairs if isinstance(value, _Pairs) else cast(dict[str, Any], value).items()


def _is_object(value: Any) -> bool:
    return isinstance(value, dict | _Pairs)


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
                f" of type {go or schemavalues.go_type(schema)}"
            )

        kind = schema["type"]
        if kind == "string":
            if not isinstance(item, str):
                mismatch(schemavalues.json_kind(item))
        elif kind == "integer":
            problem = schemavalues.int_problem(item, schema.get("format", "int64"))
            if problem:
                mismatch(problem)
        elif kind == "number":
            if isinstance(item, bool) or not isinstance(item, int | float):
                mismatch(schemavalues.json_kind(item))
        elif kind == "boolean":
            if not isinstance(item, bool):
                mismatch(schemavalues.json_kind(item))
        elif kind == "int-or-string":
            # IntOrString takes any JSON string, else decodes the value as an int32.
            problem = None if isinstance(item, str) else schemavalues.int_problem(item, "int32")
            if problem:
                mismatch(problem, "int32")
        elif kind == "quantity":
            problem = schemavalues.quantity_problem(item)
            if problem:
                self.type_errors.append(problem)
        elif kind == "date-time":
            # metav1.Time and MicroTime decode a JSON string, then parse it as RFC 3339.
            if not isinstance(item, str):
                mismatch(schemavalues.json_kind(item), "string")
            elif not schemavalues.RFC3339.match(item):
                layout = schemavalues.RFC3339_LAYOUT
                self.type_errors.append(
                    f"parsing time {json.dumps(item)} as {json.dumps(layout)}:"
                    f" cannot parse {json.dumps(item)} as {json.dumps(layout[:4])}"
                )
        elif kind == "array":
            if not isinstance(item, list):
                mismatch(schemavalues.json_kind(item))
                return
            for index, element in enumerate(item):
                self.value(schema["items"], element, f"{path}[{index}]", go_path, owner)
        elif kind == "map":
            if not _is_object(item):
                mismatch(schemavalues.json_kind(item))
                return
            seen: set[str] = set()
            for key, element in _items(item):
                if key in seen:
                    self.strict.append(f'duplicate field "{path}.{key}"')
                seen.add(key)
                self.value(schema["values"], element, f"{path}.{key}", go_path, owner)
        elif kind == "object" and "ref" in schema:
            if not _is_object(item):
                mismatch(schemavalues.json_kind(item))
                return
            self.struct(schema["ref"], item, path, go_path)
        # A free-form object (RawExtension, FieldsV1) takes any JSON value.


def _parse_raw(raw: bytes | str, obj: Any) -> Any:
    """The request text with duplicate keys kept; `obj` itself if the text is not JSON."""
    try:
        return json.loads(raw, object_pairs_hook=_Pairs, parse_float=schemavalues.FloatLiteral)
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


@functools.cache
def _clean_tables() -> Mapping[str, Mapping[str, schemavalues.Clean | None]]:
    return schemavalues.clean_tables(definitions())


@functools.cache
def _known_tables() -> Mapping[str, Mapping[str, schemavalues.Known | None]]:
    return schemavalues.known_tables(definitions())


def _without_duplicates(raw: bytes | str, obj: Any) -> bool:
    """True when the text is exactly what orjson writes for `obj`: then it repeats no key."""
    try:
        text = raw.encode() if isinstance(raw, str) else raw
        return text == orjson.dumps(obj)
    except (orjson.JSONEncodeError, UnicodeEncodeError):
        return False


def _problems(kind: str, obj: Any, api_version: str | None, raw: bytes | str | None) -> _Walk:
    """`_walk`, or an empty one without walking when `obj` is clean and `raw` repeats no key."""
    if type(obj) is dict and (raw is None or _without_duplicates(raw, obj)):
        def_name = _definition_for(kind, obj, api_version)
        if schemavalues.clean_struct(_clean_tables()[def_name], obj):
            return _Walk(definitions())
    return _walk(kind, obj, api_version, raw)


# ---- the full walk: every problem, worded ------------------------------------------------------


def _walk(kind: str, obj: Any, api_version: str | None, raw: bytes | str | None) -> _Walk:
    tree = obj if raw is None else _parse_raw(raw, obj)
    def_name = _definition_for(kind, tree, api_version)
    walk = _Walk(definitions())
    if not _is_object(tree):
        package, _, name = def_name.rpartition(".")
        walk.type_errors.append(
            f"json: cannot unmarshal {schemavalues.json_kind(tree)} into Go value of type"
            f" {package.rpartition('.')[2]}.{name}"
        )
        return walk
    walk.struct(def_name, tree, "", "")
    return walk


def type_errors(kind: str, obj: Any, *, api_version: str | None = None) -> list[str]:
    """Every value whose JSON type the kind's Go type cannot take; Kubernetes reports the first."""
    return _problems(kind, obj, api_version, None).type_errors


def strict_problems(
    kind: str, obj: Any, *, api_version: str | None = None, raw: bytes | str | None = None
) -> list[str]:
    """Unknown (and, given the request text, duplicate) fields, in document order."""
    return _problems(kind, obj, api_version, raw).strict


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
    walk = _problems(kind, obj, api_version, raw)
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
    request on them first. Every object, map and list the kind's types describe
    is a new one; scalars and free-form values are `obj`'s own.
    """
    if not isinstance(obj, dict):
        return obj
    return schemavalues.known_struct(_known_tables()[_definition_for(kind, obj, api_version)], obj)


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
