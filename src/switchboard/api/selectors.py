"""Label and field selectors, parsed and matched the way Kubernetes does.

Label selectors follow k8s.io/apimachinery/pkg/labels: `labelsyntax` reads
the text, and each requirement is validated here, keys as qualified names
and values as label values, with error messages worded as the Go code words
them, because kubectl shows them verbatim. A `metav1.LabelSelector` object
(matchLabels/matchExpressions) converts to the same `LabelSelector` value; a
nil object selects nothing, an empty one everything.

Field selectors follow k8s.io/apimachinery/pkg/fields: comma-separated
`field=value`, `field==value` or `field!=value` terms, with `\\`, `\\,` and
`\\=` escapes in values. Which fields a kind accepts, and how an accepted
label is renamed, is the per-kind conversion table of the Kubernetes API
(pkg/apis/core/v1/conversion.go and friends); `object_fields` extracts the
values those canonical names take on an object. A field a kind does not
accept is an error, never a silent non-match.

Everything here is pure: values in, values out. Errors are `SelectorError`,
a `ValueError` the apiserver answers with 400 BadRequest.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from switchboard.api import fielderrors, labelsyntax, validation
from switchboard.api.kinds import Obj


class SelectorError(ValueError):
    """A selector that does not parse, or names a field its kind does not support."""


class Operator(enum.StrEnum):
    """The relation a requirement states, spelled as k8s.io/apimachinery/pkg/selection spells it."""

    IN = "in"
    NOT_IN = "notin"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    GREATER_THAN = "gt"
    LESS_THAN = "lt"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


_INT64 = re.compile(r"[+-]?[0-9]+")


def _aggregate(messages: list[str]) -> str:
    """Join errors as utilerrors.NewAggregate does: one bare, several in brackets."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


# ---------------------------------------------------------------------------
# Label selectors
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """One condition on one label key; build it with `requirement()` to have it validated."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op is Operator.EXISTS:
            return self.key in labels
        if op is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        # gt / lt compare as 64-bit integers; a label that is not one never matches.
        if self.key not in labels or len(self.values) != 1:
            return False
        actual, wanted = _parse_int64(labels[self.key]), _parse_int64(self.values[0])
        if actual is None or wanted is None:
            return False
        return actual > wanted if op is Operator.GREATER_THAN else actual < wanted

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        values = ",".join(sorted(self.values))
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {op.value} ({values})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(op, op.value)
        return f"{self.key}{symbol}{values}"


def _parse_int64(text: str) -> int | None:
    if not _INT64.fullmatch(text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def requirement(
    key: str, operator: Operator, values: Iterable[str] = (), *, path: str = ""
) -> Requirement:
    """A validated requirement, failing as labels.NewRequirement fails.

    `path` prefixes the field paths in error messages (`key`, `values[0][k]`).
    """
    vals = list(values)
    prefix = f"{path}." if path else ""
    errors: list[str] = []
    key_errors = validation.is_qualified_name(key)
    if key_errors:
        errors.append(str(fielderrors.invalid(prefix + "key", key, "; ".join(key_errors))))
    values_path = prefix + "values"
    shown: Any = vals or None  # Go renders a nil slice as null
    if operator in (Operator.IN, Operator.NOT_IN):
        if not vals:
            detail = "for 'in', 'notin' operators, values set can't be empty"
            errors.append(str(fielderrors.invalid(values_path, shown, detail)))
    elif operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS):
        if len(vals) != 1:
            detail = "exact-match compatibility requires one single value"
            errors.append(str(fielderrors.invalid(values_path, shown, detail)))
    elif operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        if vals:
            detail = "values set must be empty for exists and does not exist"
            errors.append(str(fielderrors.invalid(values_path, shown, detail)))
    else:
        if len(vals) != 1:
            detail = "for 'Gt', 'Lt' operators, exactly one value is required"
            errors.append(str(fielderrors.invalid(values_path, shown, detail)))
        for i, v in enumerate(vals):
            if _parse_int64(v) is None:
                detail = "for 'Gt', 'Lt' operators, the value must be an integer"
                errors.append(str(fielderrors.invalid(f"{values_path}[{i}]", v, detail)))
    for i, v in enumerate(vals):
        value_errors = validation.is_valid_label_value(v)
        if value_errors:
            field = f"{values_path}[{i}][{key}]"
            errors.append(str(fielderrors.invalid(field, v, "; ".join(value_errors))))
    if errors:
        raise SelectorError(_aggregate(errors))
    return Requirement(key, operator, tuple(vals))


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """An AND of requirements; `NOTHING` (from a nil metav1.LabelSelector) matches no object."""

    requirements: tuple[Requirement, ...] = ()
    matches_nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.matches_nothing:
            return False
        present = labels or {}
        return all(r.matches(present) for r in self.requirements)

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (it selects everything)."""
        return not self.matches_nothing and not self.requirements

    def requires_exact_match(self, key: str) -> str | None:
        """The single value `key` must have, when the selector pins one (for indexed lookups)."""
        for r in self.requirements:
            if r.key == key:
                exact = (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN)
                if r.operator in exact and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(matches_nothing=True)


def _sorted_by_key(reqs: Iterable[Requirement]) -> tuple[Requirement, ...]:
    return tuple(sorted(reqs, key=lambda r: r.key))


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a `labelSelector` query value; the empty string selects everything."""
    try:
        reqs = labelsyntax.parse(text, _parsed_requirement)
    except labelsyntax.LabelSyntaxError as exc:
        raise SelectorError(str(exc)) from exc
    return LabelSelector(_sorted_by_key(reqs))


def _parsed_requirement(key: str, operator: str, values: list[str]) -> Requirement:
    return requirement(key, Operator(operator), values)


def label_selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """Equality on every pair, as a Service's or ReplicationController's selector map means.

    Not validated (labels.SelectorFromSet); an empty map selects everything.
    """
    reqs = (Requirement(k, Operator.EQUALS, (v,)) for k, v in (labels or {}).items())
    return LabelSelector(_sorted_by_key(reqs))


_EXPRESSION_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def from_label_selector(selector: Obj | None) -> LabelSelector:
    """Convert a metav1.LabelSelector (matchLabels + matchExpressions), as LabelSelectorAsSelector.

    None selects nothing; an empty object selects everything.
    """
    if selector is None:
        return NOTHING
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    reqs = [requirement(k, Operator.EQUALS, [v]) for k, v in match_labels.items()]
    for expr in expressions:
        name = expr.get("operator", "")
        operator = _EXPRESSION_OPERATORS.get(name)
        if operator is None:
            raise SelectorError(f"{json.dumps(name)} is not a valid label selector operator")
        reqs.append(requirement(expr.get("key", ""), operator, expr.get("values") or []))
    return LabelSelector(_sorted_by_key(reqs))


def format_labels(labels: Mapping[str, str] | None) -> str:
    """`a=b,c=d` sorted by key, or `<none>`, as kubectl prints a selector map or a label set."""
    rendered = ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))
    return rendered or "<none>"


def selector_string(selector: Obj | None) -> str:
    """A metav1.LabelSelector in canonical selector syntax, "" when it selects everything.

    This is what Scale's `status.selector` carries and what `parse_label_selector` reads back.
    """
    return str(from_label_selector(selector))


def format_label_selector(selector: Obj | None) -> str:
    """A metav1.LabelSelector as kubectl prints it (`app=web,tier in (a,b)`, `<none>`)."""
    try:
        rendered = str(from_label_selector(selector))
    except SelectorError:
        return "<error>"
    return rendered or "<none>"


# ---------------------------------------------------------------------------
# Field selectors
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """`field=value` (operator EQUALS; `==` is read as `=`) or `field!=value`."""

    field: str
    operator: Operator
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        # A field absent from the set reads as "", as fields.Set.Get does.
        equal = fields.get(self.field, "") == self.value
        return equal if self.operator is Operator.EQUALS else not equal

    def __str__(self) -> str:
        return f"{self.field}{self.operator.value}{escape_field_value(self.value)}"


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """An AND of field requirements; the empty selector selects everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def requires_exact_match(self, field: str) -> str | None:
        """The value `field` must equal, when a term pins it (`metadata.name=x` for a watch)."""
        for r in self.requirements:
            if r.field == field and r.operator is Operator.EQUALS:
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def escape_field_value(value: str) -> str:
    """Escape `\\`, `,` and `=` so a value survives a round trip through a field selector."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            # Go prints the rune with %v, which is its code point.
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms, start, escaped = [], 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def parse_field_selector(text: str) -> FieldSelector:
    """Parse a `fieldSelector` query value, without checking which fields exist.

    Check the fields against a kind with `convert_field_selector`.
    """
    if not text:
        return FieldSelector()
    reqs = []
    for term in sorted(_split_terms(text)):
        if not term:
            continue
        for i in range(len(term)):
            op = next((o for o in ("!=", "==", "=") if term.startswith(o, i)), None)
            if op is not None:
                field, raw = term[:i], term[i + len(op) :]
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        operator = Operator.NOT_EQUALS if op == "!=" else Operator.EQUALS
        reqs.append(FieldRequirement(field, operator, _unescape_field_value(raw)))
    return FieldSelector(tuple(reqs))


_INVOLVED_OBJECT = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
)


def _same(*names: str) -> dict[str, str]:
    return {n: n for n in names}


# (group, kind) -> accepted field label -> the canonical label `object_fields` provides.
_FIELD_LABELS: dict[tuple[str, str], dict[str, str]] = {
    ("", "Pod"): {
        **_same(
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ),
        # Old v1 clients send spec.host.
        "spec.host": "spec.nodeName",
    },
    ("", "Node"): _same("metadata.name", "spec.unschedulable"),
    ("", "Namespace"): _same("metadata.name", "status.phase"),
    ("", "Service"): _same("metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"),
    ("", "Event"): _same(
        *_INVOLVED_OBJECT,
        "reason",
        "reportingComponent",
        "source",
        "type",
        "metadata.namespace",
        "metadata.name",
    ),
    # events.k8s.io/v1 Events share the core storage; their wire names map onto the core ones.
    ("events.k8s.io", "Event"): {
        **{"regarding." + f.split(".", 1)[1]: f for f in _INVOLVED_OBJECT},
        "reportingController": "reportingComponent",
        **_same("reason", "source", "type", "metadata.namespace", "metadata.name"),
    },
}


def _convert_field(group: str, kind: str, field: str) -> str:
    accepted = _FIELD_LABELS.get((group, kind))
    if accepted is None:
        if field in ("metadata.name", "metadata.namespace"):
            return field
        raise SelectorError(
            f'{json.dumps(field)} is not a known field selector: only "metadata.name", '
            '"metadata.namespace"'
        )
    canonical = accepted.get(field)
    if canonical is None:
        raise SelectorError(f"field label not supported: {field}")
    return canonical


def convert_field_selector(selector: FieldSelector, *, group: str, kind: str) -> FieldSelector:
    """Check every field against what `kind` of `group` accepts, renamed to canonical labels.

    The error texts are the Kubernetes ones: `field label not supported: x` for
    kinds with their own table, `"x" is not a known field selector: only
    "metadata.name", "metadata.namespace"` for the rest.
    """
    return FieldSelector(
        tuple(
            FieldRequirement(_convert_field(group, kind, r.field), r.operator, r.value)
            for r in selector.requirements
        )
    )


def field_selector_for(text: str, *, group: str, kind: str) -> FieldSelector:
    """Parse a `fieldSelector` query value and check it against a kind, in one step."""
    return convert_field_selector(parse_field_selector(text), group=group, kind=kind)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _dig(obj: Mapping[str, Any], *path: str) -> Any:
    node: Any = obj
    for name in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(name)
    return node


def _event_fields(obj: Obj) -> dict[str, str]:
    events_v1 = str(obj.get("apiVersion", "")).startswith("events.k8s.io/") or "regarding" in obj
    if events_v1:
        reference = obj.get("regarding") or {}
        reporting = _text(obj.get("reportingController"))
        source = _text(_dig(obj, "deprecatedSource", "component"))
    else:
        reference = obj.get("involvedObject") or {}
        reporting = _text(obj.get("reportingComponent"))
        source = _text(_dig(obj, "source", "component"))
    fields = {f: _text(reference.get(f.split(".", 1)[1])) for f in _INVOLVED_OBJECT}
    fields["reason"] = _text(obj.get("reason"))
    fields["reportingComponent"] = reporting
    fields["source"] = source or reporting
    fields["type"] = _text(obj.get("type"))
    return fields


def _pod_fields(obj: Obj) -> dict[str, str]:
    pod_ips = _dig(obj, "status", "podIPs") or []
    first_ip = pod_ips[0].get("ip") if pod_ips and isinstance(pod_ips[0], Mapping) else None
    return {
        "spec.nodeName": _text(_dig(obj, "spec", "nodeName")),
        "spec.restartPolicy": _text(_dig(obj, "spec", "restartPolicy")),
        "spec.schedulerName": _text(_dig(obj, "spec", "schedulerName")),
        "spec.serviceAccountName": _text(_dig(obj, "spec", "serviceAccountName")),
        "spec.hostNetwork": _text(bool(_dig(obj, "spec", "hostNetwork"))),
        "status.phase": _text(_dig(obj, "status", "phase")),
        "status.podIP": _text(first_ip or _dig(obj, "status", "podIP")),
        "status.nominatedNodeName": _text(_dig(obj, "status", "nominatedNodeName")),
    }


def object_fields(kind: str, obj: Obj) -> dict[str, str]:
    """The field-selector values of `obj`, under the canonical labels of its kind.

    Match a converted selector against this: `selector.matches(object_fields(kind, obj))`.
    Events in the events.k8s.io/v1 shape (`regarding`, `reportingController`) give the
    same canonical labels as core v1 Events.
    """
    fields = {
        "metadata.name": _text(_dig(obj, "metadata", "name")),
        "metadata.namespace": _text(_dig(obj, "metadata", "namespace")),
    }
    if kind == "Pod":
        fields.update(_pod_fields(obj))
    elif kind == "Node":
        fields["spec.unschedulable"] = _text(bool(_dig(obj, "spec", "unschedulable")))
    elif kind == "Namespace":
        fields["status.phase"] = _text(_dig(obj, "status", "phase"))
    elif kind == "Service":
        fields["spec.clusterIP"] = _text(_dig(obj, "spec", "clusterIP"))
        fields["spec.type"] = _text(_dig(obj, "spec", "type"))
    elif kind == "Event":
        fields.update(_event_fields(obj))
    return fields
