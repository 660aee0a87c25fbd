"""The shortcuts every write takes give the answers of the full checks they stand in for.

Field validation (`schema.check`) skips re-parsing a body that is exactly
what orjson writes for the decoded object, and skips building a report for
an object it finds clean; `schema.without_unknown` and `codec.check_shape`
walk compiled tables and stacked containers; label keys and values are
accepted at a glance when they are short and plainly valid. Each is checked
here against the long way on objects drawn from the kinds' own schema,
with wrong types, unknown fields, nulls, floats, repeated keys, shared and
cyclic values mixed in.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.api import schema, validation
from switchboard.apiserver import codec, status

KINDS = [("Service", "v1"), ("Pod", "v1"), ("Deployment", "apps/v1"), ("Event", "events.k8s.io/v1")]
STRINGS = st.sampled_from(
    ["", "a", "app", "x" * 63, "x" * 64, "a/b", "example.com/name", "UPPER", "é", "<&>", "\u2028",
     "1Gi", "500m", "1e3", "0.5", "1..2", "1 Gigabyte", "12E", "+1", ".", "Ki",
     "2024-01-02T03:04:05Z", "2024-01-02T03:04:05.5+01:00", "yesterday", "http", "80", "TCP"]
)  # fmt: skip
NUMBERS = st.one_of(
    st.sampled_from([0, 1, -1, 80, 65536, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1]),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),  # what orjson reads and writes
    st.sampled_from([0.5, 1.0, 1e16, 1.5e-7, -0.0, 123.25]),
)
SCALARS = st.one_of(STRINGS, NUMBERS, st.booleans(), st.none())
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(STRINGS, inner, max_size=3),
    max_leaves=6,
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _value(data: st.DataObject, spec: schema.FieldSchema, depth: int) -> Any:
    """A value for a field of this schema: usually of its type, sometimes anything at all."""
    if depth > 6 or data.draw(st.integers(0, 15)) == 0:
        return data.draw(JUNK)
    kind = spec["type"]
    if kind == "array":
        return [_value(data, spec["items"], depth + 1) for _ in range(data.draw(st.integers(0, 2)))]
    if kind == "map":
        keys = data.draw(st.lists(STRINGS, max_size=3))
        return {key: _value(data, spec["values"], depth + 1) for key in keys}
    if kind == "object" and "ref" in spec:
        return _struct(data, spec["ref"], depth + 1)
    if kind in ("integer", "int-or-string", "number", "quantity"):
        return data.draw(NUMBERS | STRINGS) if data.draw(st.booleans()) else data.draw(NUMBERS)
    return data.draw(SCALARS)


def _struct(data: st.DataObject, def_name: str, depth: int) -> dict[str, Any]:
    properties = schema.definitions()[def_name]["properties"]
    keys = data.draw(st.lists(st.sampled_from(sorted(properties)), max_size=6, unique=True))
    obj = {key: _value(data, properties[key], depth) for key in keys}
    if data.draw(st.integers(0, 9)) == 0:
        obj[data.draw(st.sampled_from(["colour", "imagee", "x"]))] = data.draw(JUNK)
    return obj


# Whole objects with a field of nearly every type, for one or two of their values to be spoilt.
TEMPLATES: list[tuple[str, str, dict[str, Any]]] = [
    ("Service", "v1", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "b"},
                     "creationTimestamp": "2024-01-02T03:04:05Z", "generation": 1},
        "spec": {
            "type": "LoadBalancer", "selector": {"app": "web"},
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080,
                       "nodePort": 30080, "appProtocol": "http"},
                      {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": "dns"}],
            "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4"],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
            "externalTrafficPolicy": "Local", "healthCheckNodePort": 30001,
            "allocateLoadBalancerNodePorts": True, "loadBalancerSourceRanges": ["10.0.0.0/8"],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "ipMode": "VIP"}]}},
    }),
    ("Pod", "v1", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "u",
             "controller": True}]},
        "spec": {
            "containers": [{
                "name": "c", "image": "nginx", "ports": [{"containerPort": 80}],
                "resources": {"limits": {"cpu": "500m", "memory": "1Gi"},
                              "requests": {"cpu": 0.5, "memory": 1000}},
                "env": [{"name": "A", "value": "b"}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
            }],
            "terminationGracePeriodSeconds": 30, "nodeSelector": {"k": "v"},
        },
        "status": {"phase": "Running", "startTime": "2024-01-02T03:04:05Z"},
    }),
    ("Deployment", "apps/v1", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {
            "replicas": 3, "paused": False, "selector": {"matchLabels": {"app": "d"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {"metadata": {"labels": {"app": "d"}},
                         "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    }),
]  # fmt: skip


def _places(value: Any) -> list[tuple[Any, Any]]:
    """(container, key or index) of every value inside `value`."""
    places: list[tuple[Any, Any]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        places.append((value, key))
        if isinstance(item, dict | list):
            places += _places(item)
    return places


def _spoilt(data: st.DataObject) -> tuple[str, str, dict[str, Any]]:
    kind, api_version, template = data.draw(st.sampled_from(TEMPLATES))
    obj = copy.deepcopy(template)
    for _ in range(data.draw(st.integers(1, 2))):
        container, key = data.draw(st.sampled_from(_places(obj)))
        if isinstance(container, dict) and data.draw(st.integers(0, 4)) == 0:
            key = data.draw(st.sampled_from(["colour", "x"]))  # an unknown field
        container[key] = data.draw(SCALARS | JUNK)
    return kind, api_version, obj


def _object(data: st.DataObject) -> tuple[str, str, dict[str, Any]]:
    """A kind, its apiVersion and an object of it, drawn from the schema or a spoilt template."""
    if data.draw(st.booleans()):
        return _spoilt(data)
    kind, api_version = data.draw(st.sampled_from(KINDS))
    obj = _struct(data, schema.definition_name(kind, api_version), 1)
    if data.draw(st.booleans()):
        obj["apiVersion"] = api_version
    return kind, api_version, obj


def _checked(kind: str, obj: Any, raw: bytes | str, mode: schema.Mode) -> Any:
    return schema.check(kind, obj, mode, raw=raw), schema.strict_problems(kind, obj, raw=raw)


@SETTINGS
@given(st.data(), st.sampled_from(schema.MODES))
def test_a_compact_body_is_judged_as_when_its_text_is_parsed_again(
    data: st.DataObject, mode: schema.Mode
) -> None:
    kind, _, obj = _object(data)
    compact = orjson.dumps(obj)
    # A trailing newline is not orjson's output, so that body's text is parsed, keys repeated.
    assert _checked(kind, obj, compact, mode) == _checked(kind, obj, compact + b"\n", mode)
    assert _checked(kind, obj, compact.decode(), mode) == _checked(kind, obj, compact + b"\n", mode)


@SETTINGS
@given(st.data(), st.sampled_from(schema.MODES))
def test_an_object_without_its_text_is_judged_as_by_the_full_walk(
    data: st.DataObject, mode: schema.Mode
) -> None:
    kind, _, obj = _object(data)
    # json.dumps writes floats as repr() does, as the report quotes a float it has no text for.
    pretty = json.dumps(obj, indent=1)
    assert schema.check(kind, obj, mode) == schema.check(kind, obj, mode, raw=pretty)
    assert schema.strict_problems(kind, obj) == schema.strict_problems(kind, obj, raw=pretty)
    # Under Ignore the only error is the first type error.
    assert schema.type_errors(kind, obj)[:1] == schema.check(kind, obj, "Ignore", raw=pretty)[0]


def _repeating_first_key(obj: dict[str, Any]) -> bytes:
    """The compact text of a non-empty object with its first member written twice."""
    key, item = next(iter(obj.items()))
    return b"{" + orjson.dumps(key) + b":" + orjson.dumps(item) + b"," + orjson.dumps(obj)[1:]


def _texts_repeating_a_key(obj: dict[str, Any]) -> list[bytes]:
    """Compact texts of `obj`, each with one key repeated: at the top, or in one of its objects."""
    texts = [_repeating_first_key(obj)] if obj else []
    for key, item in obj.items():
        if isinstance(item, dict) and item:
            members = [
                orjson.dumps(k) + b":" + (_repeating_first_key(v) if k == key else orjson.dumps(v))
                for k, v in obj.items()
            ]
            texts.append(b"{" + b",".join(members) + b"}")
    return texts


@SETTINGS
@given(st.data(), st.sampled_from(["Strict", "Warn"]))
def test_a_compact_body_that_repeats_a_key_is_judged_as_when_its_text_is_parsed_again(
    data: st.DataObject, mode: schema.Mode
) -> None:
    kind, _, obj = _object(data)
    for repeated in _texts_repeating_a_key(obj):
        parsed = orjson.loads(repeated)
        assert _checked(kind, parsed, repeated, mode) == _checked(
            kind, parsed, repeated + b" ", mode
        )


def test_a_repeated_field_in_orjsons_own_spacing_is_reported() -> None:
    raw = b'{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","name":"a"}}'
    errors, warnings = schema.check("Service", orjson.loads(raw), "Warn", raw=raw)
    assert (errors, warnings) == ([], ['duplicate field "metadata.name"'])


# ---- without_unknown ---------------------------------------------------------------------------


def _known_as_walked(def_name: str, value: dict[str, Any]) -> Any:
    """without_unknown as first written: the schema read field by field on every call."""
    properties = schema.definitions()[def_name]["properties"]
    return {
        key: _known_value_as_walked(properties[key], item)
        for key, item in value.items()
        if key in properties
    }


def _known_value_as_walked(spec: schema.FieldSchema, item: Any) -> Any:
    kind = spec["type"]
    if kind == "array" and isinstance(item, list):
        return [_known_value_as_walked(spec["items"], element) for element in item]
    if kind == "map" and isinstance(item, dict):
        return {key: _known_value_as_walked(spec["values"], v) for key, v in item.items()}
    if kind == "object" and "ref" in spec and isinstance(item, dict):
        return _known_as_walked(spec["ref"], item)
    return item


@SETTINGS
@given(st.data())
def test_unknown_fields_are_dropped_as_the_field_by_field_walk_drops_them(
    data: st.DataObject,
) -> None:
    kind, api_version, obj = _object(data)
    expected = _known_as_walked(schema.definition_name(kind, api_version), obj)
    known = schema.without_unknown(kind, obj, api_version=api_version)
    assert known == expected
    assert _shared(known, obj) == _shared(expected, obj)


def _shared(out: Any, original: Any) -> Any:
    """Where `out` holds the very objects and lists of `original`, not copies."""
    if isinstance(out, dict):
        return out is original, {k: _shared(v, original[k]) for k, v in out.items()}
    if isinstance(out, list):
        return out is original, [_shared(v, o) for v, o in zip(out, original, strict=True)]
    return None


# ---- check_shape ---------------------------------------------------------------------------------


def _shape_error_as_walked(value: Any, size: int) -> str | None:
    """check_shape's verdict by its own walk alone: every value stacked, in its order."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    budget = size + 1
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            return "expands"
        if depth > codec.MAX_DEPTH:
            return "nests"
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return None


def _shape_error(value: Any, size: int) -> str | None:
    try:
        codec.check_shape(value, size)
    except status.APIError as exc:
        return "expands" if "expands" in exc.message else "nests"
    return None


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth - 1):
        leaf = [leaf]
    return leaf


@SETTINGS
@given(JUNK, st.integers(-2, 40))
def test_a_bodys_shape_is_judged_as_by_walking_every_value(value: Any, size: int) -> None:
    assert _shape_error(value, size) == _shape_error_as_walked(value, size)


@pytest.mark.parametrize("depth", [99, 100, 101, 150])
@pytest.mark.parametrize("size", [50, 99, 100, 101, 10**6])
def test_a_deep_body_is_judged_as_by_walking_every_value(depth: int, size: int) -> None:
    for value in (_nested(depth, 1), _nested(depth, []), {"a": _nested(depth - 1, "x")}):
        assert _shape_error(value, size) == _shape_error_as_walked(value, size)


def test_shared_and_cyclic_values_are_judged_as_by_walking_every_value() -> None:
    shared: list[Any] = [1, 2, [3]]
    wide = {"a": shared, "b": [shared, shared, shared]}
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    both = {"a": shared, "b": cyclic}
    for value in (wide, cyclic, both):
        for size in (0, 5, 12, 13, 14, 200, 10**6):
            assert _shape_error(value, size) == _shape_error_as_walked(value, size)


# ---- label keys and values ---------------------------------------------------------------------

LABELISH = st.text(alphabet="aZ09-_./é ", max_size=70) | st.builds(
    lambda n, c: c * n, st.integers(60, 66), st.sampled_from(["a", "é", "-", "."])
)


@settings(max_examples=500, deadline=None)
@given(LABELISH)
def test_a_label_key_or_value_taken_at_a_glance_is_judged_as_by_the_full_rules(
    value: str,
) -> None:
    # The rules as they read before the glance: the length in bytes, then the pattern.
    too_long = len(value.encode("utf-8", "surrogatepass")) > 63
    errs = [validation.max_len_error(63)] if too_long else []
    if not re.fullmatch(validation.LABEL_VALUE_FMT, value):
        errs.append(
            validation.regex_error(
                validation.LABEL_VALUE_MSG,
                validation.LABEL_VALUE_FMT,
                "MyValue",
                "my_value",
                "12345",
            )
        )
    assert validation.is_valid_label_value(value) == errs
    if "/" in value:
        return  # a key with a prefix is never taken at a glance
    name_part = validation.regex_error(
        validation.QUALIFIED_NAME_MSG, validation.QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"
    )
    errs = []
    if not value:
        errs.append("name part " + validation.EMPTY_ERROR)
    elif too_long:
        errs.append("name part " + validation.max_len_error(63))
    if not re.fullmatch(validation.QUALIFIED_NAME_FMT, value):
        errs.append("name part " + name_part)
    assert validation.is_qualified_name(value) == errs
