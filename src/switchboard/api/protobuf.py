"""Decode Kubernetes protobuf request bodies into the JSON-shaped objects kubectl sends as JSON.

kubectl 1.32 and later send the objects of `kubectl create <subcommand>` and
`kubectl debug` as `application/vnd.kubernetes.protobuf`, with no fallback to
JSON. Such a body is the magic `k8s\\x00` followed by a `runtime.Unknown`:

    message Unknown {
      optional TypeMeta typeMeta = 1;        // apiVersion = 1, kind = 2
      optional bytes raw = 2;                // the object, e.g. a v1.Service
      optional string contentEncoding = 3;   // always "" from kubectl
      optional string contentType = 4;
    }

`decode(body)` returns the object exactly as kubectl would have sent it as
JSON (same keys, same omitted zero values, `"creationTimestamp": null`,
`"status": {}`), with `kind` and `apiVersion` taken from the envelope, so
everything after decoding treats both encodings alike. Three layers:

    protobuf     (this module) envelope, conversion rules, errors
    protoschema  field tables: number -> JSON name, type, presence
                 (`protofields` the vocabulary, `protopod` the Pod's tables)
    protowire    the wire format: varints, lengths, fixed32/64

Conversion follows Go's own round trip (protobuf into the Go struct, then
encoding/json): scalars by their Go JSON tag (see protofields), int32/int64
as int, IntOrString as int or str, Quantity as its string, Time as RFC 3339
in whole seconds (nanos dropped, as the Go type does), FieldsV1 as the JSON
it carries.

Errors: one exception, `ProtobufError(ValueError)`, with a message meant for
the person at the kubectl end: a missing magic, a truncated or corrupt body
(`protowire.WireError` is mapped to it, with the field path), or a kind with
no table ("cannot decode protobuf for kind ConfigMap (v1); send JSON").
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Final

from switchboard.api import protofields, protoschema, protowire
from switchboard.api.protofields import Field, Presence, Shape

MEDIA_TYPE: Final = "application/vnd.kubernetes.protobuf"
MAGIC: Final = b"k8s\x00"

Obj = dict[str, Any]


class ProtobufError(ValueError):
    """A protobuf request body that cannot be decoded; the message says why."""


def decode(body: bytes) -> Obj:
    """Decode a `k8s\\x00` + runtime.Unknown body into the object's JSON form."""
    if not body.startswith(MAGIC):
        raise ProtobufError(
            "protobuf body does not start with the Kubernetes magic k8s\\x00; "
            "send application/vnd.kubernetes.protobuf as kubectl does, or JSON"
        )
    api_version, kind, raw = _envelope(body[len(MAGIC) :])
    message = protoschema.KINDS.get((api_version, kind))
    if message is None:
        raise ProtobufError(f"cannot decode protobuf for kind {kind} ({api_version}); send JSON")
    return {"kind": kind, "apiVersion": api_version, **_message(message, raw, kind)}


def _envelope(buf: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, raw object) of a runtime.Unknown."""
    api_version = kind = encoding = ""
    raw: bytes | None = None
    try:
        for number, wire_type, value in protowire.iter_fields(buf):
            if number == 1 and isinstance(value, bytes):  # TypeMeta
                for sub, _, sub_value in protowire.iter_fields(value):
                    if sub == 1 and isinstance(sub_value, bytes):
                        api_version = _text(sub_value, "typeMeta.apiVersion")
                    elif sub == 2 and isinstance(sub_value, bytes):
                        kind = _text(sub_value, "typeMeta.kind")
            elif number == 2 and isinstance(value, bytes):
                raw = value
            elif number == 3 and isinstance(value, bytes):
                encoding = _text(value, "contentEncoding")
            elif number in (1, 2, 3) and wire_type != protowire.LENGTH_DELIMITED:
                raise ProtobufError(f"protobuf envelope field {number} has wire type {wire_type}")
    except protowire.WireError as exc:
        raise ProtobufError(f"malformed protobuf envelope: {exc}") from exc
    if not kind or not api_version:
        raise ProtobufError("protobuf envelope names no apiVersion and kind")
    if raw is None:
        raise ProtobufError(f"protobuf envelope for {kind} carries no object")
    if encoding:
        raise ProtobufError(f"protobuf content encoding {encoding!r} is not supported; send JSON")
    return api_version, kind, raw


def _message(name: str, buf: bytes, path: str) -> Obj:
    """One message as a JSON object, following its table."""
    table = protoschema.MESSAGES[name]
    seen: dict[int, Any] = {}
    try:
        for number, wire_type, value in protowire.iter_fields(buf):
            field = table.get(number)
            if field is None:
                continue  # a field newer than our tables, or one not modelled
            where = _join(path, field.json)
            if field.shape is Shape.LIST:
                items = seen.setdefault(number, [])
                items.extend(_list_items(field, wire_type, value, f"{where}[{len(items)}]"))
            elif field.shape is Shape.MAP:
                key, item = _map_entry(field, wire_type, value, where)
                seen.setdefault(number, {})[key] = item
            else:
                seen[number] = _single(field.type, wire_type, value, where)
    except protowire.WireError as exc:
        raise ProtobufError(f"malformed protobuf in {path}: {exc}") from exc

    out: Obj = {}
    for number, field in table.items():
        decoded: Any
        if number in seen:
            decoded = seen[number]
            if field.presence is Presence.OMITEMPTY and decoded in ("", 0, False, [], {}):
                continue
        elif field.presence in (Presence.OMITEMPTY, Presence.POINTER):
            continue
        elif field.presence is Presence.NULLABLE or field.shape is not Shape.ONE:
            decoded = None  # a nil pointer, slice or map that is not omitempty
        else:
            decoded = _zero(field.type, _join(path, field.json))
        if field.json:
            out[field.json] = decoded
        else:
            out.update(decoded)  # a struct embedded inline
    return out


def _single(type_: str, wire_type: int, value: int | bytes, path: str) -> Any:
    if type_ in (protofields.INT32, protofields.INT64, protofields.BOOL):
        if not isinstance(value, int) or wire_type != protowire.VARINT:
            raise ProtobufError(f"{path}: expected a varint, got wire type {wire_type}")
        return _number(type_, value)
    if not isinstance(value, bytes):
        raise ProtobufError(f"{path}: expected length-delimited data, got wire type {wire_type}")
    if type_ == protofields.STRING:
        return _text(value, path)
    if type_ in protofields.SPECIALS:
        return _special(type_, value, path)
    return _message(type_, value, path)


def _number(type_: str, value: int) -> int | bool:
    if type_ == protofields.INT32:
        return protowire.as_int32(value)
    if type_ == protofields.INT64:
        return protowire.as_int64(value)
    return value != 0


def _list_items(field: Field, wire_type: int, value: int | bytes, path: str) -> list[Any]:
    numeric = field.type in (protofields.INT32, protofields.INT64, protofields.BOOL)
    if numeric and isinstance(value, bytes):  # packed
        try:
            return [_number(field.type, v) for v in protowire.iter_packed_varints(value)]
        except protowire.WireError as exc:
            raise ProtobufError(f"{path}: {exc}") from exc
    return [_single(field.type, wire_type, value, path)]


def _map_entry(field: Field, wire_type: int, value: int | bytes, path: str) -> tuple[str, Any]:
    if not isinstance(value, bytes):
        raise ProtobufError(f"{path}: expected a map entry, got wire type {wire_type}")
    key = ""
    item: Any = None
    for number, entry_wire_type, entry_value in protowire.iter_fields(value):
        if number == 1:
            key = _single(protofields.STRING, entry_wire_type, entry_value, f"{path} key")
        elif number == 2:
            item = _single(field.type, entry_wire_type, entry_value, f"{path}[{key}]")
    if item is None:
        item = _zero(field.type, f"{path}[{key}]")
    return key, item


def _special(type_: str, buf: bytes, path: str) -> Any:
    """IntOrString, Quantity, Time and FieldsV1 in their JSON form."""
    fields: dict[int, int | bytes] = {}
    for number, _, value in protowire.iter_fields(buf):
        fields[number] = value
    if type_ == protofields.INT_OR_STRING:
        # type = 1 (0 int, 1 string), intVal = 2, strVal = 3
        if fields.get(1, 0) == 1:
            raw = fields.get(3, b"")
            return _text(raw, path) if isinstance(raw, bytes) else ""
        int_val = fields.get(2, 0)
        return protowire.as_int32(int_val) if isinstance(int_val, int) else 0
    if type_ == protofields.QUANTITY:
        raw = fields.get(1, b"")
        return (_text(raw, path) if isinstance(raw, bytes) else "") or "0"
    if type_ == protofields.TIME:
        # seconds = 1, nanos = 2. The Go type keeps whole seconds only, and
        # writes the zero time as an empty message, which JSON shows as null.
        if not buf:
            return None
        seconds = fields.get(1, 0)
        if not isinstance(seconds, int):
            raise ProtobufError(f"{path}: malformed timestamp")
        return _rfc3339(protowire.as_int64(seconds), path)
    # FieldsV1: raw = 1 is already JSON.
    raw = fields.get(1, b"")
    if not isinstance(raw, bytes) or not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProtobufError(f"{path}: fieldsV1 is not JSON") from exc


def _rfc3339(seconds: int, path: str) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ProtobufError(f"{path}: timestamp {seconds} is out of range") from exc
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )


def _zero(type_: str, path: str) -> Any:
    """The JSON of a Go zero value: what an absent ALWAYS field decodes to."""
    if type_ == protofields.STRING:
        return ""
    if type_ in (protofields.INT32, protofields.INT64):
        return 0
    if type_ == protofields.BOOL:
        return False
    if type_ in protofields.SPECIALS:
        return _special(type_, b"", path)
    return _message(type_, b"", path)


def _text(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtobufError(f"{path}: string is not valid UTF-8") from exc


def _join(path: str, name: str) -> str:
    """The JSON path of a field; an inlined struct adds no segment."""
    return f"{path}.{name}" if name else path
