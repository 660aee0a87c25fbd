"""The makings of server-side Table cells: column definitions, readers, kubectl's wording.

Every printer (`printers`) reads plain JSON objects that may lack any field
or hold the wrong type in it, so the readers (`dig`, `str_at`, `int_at`,
`list_at`) answer a missing or ill-typed value with the type's zero instead
of raising: a row always prints.

Time is an argument: ages are measured against the `now` passed in, never
the clock, so every printer is pure and its tests exact. Ages are formatted
like Kubernetes' `duration.HumanDuration` (`human_duration`); label sets and
selectors as kubectl's `labels.FormatLabels` and `LabelSelectorAsSelector`
print them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from switchboard.api import kinds

Obj = kinds.Obj
Cell = str | int


class Column(TypedDict):
    """A meta.k8s.io/v1 TableColumnDefinition."""

    name: str
    type: str  # "string", "integer", "date", …
    format: str  # "name" marks the column kubectl treats as the object's name
    description: str
    priority: int  # 0: always shown; 1: only with -o wide


class RowCondition(TypedDict):
    """A meta.k8s.io/v1 TableRowCondition."""

    type: str
    status: str
    reason: str
    message: str


WIDE = 1  # the priority of columns kubectl shows only with -o wide


def column(
    name: str, description: str, *, type_: str = "string", priority: int = 0, fmt: str = ""
) -> Column:
    return {
        "name": name,
        "type": type_,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


def human_duration(d: timedelta) -> str:
    """`d` the way Kubernetes' duration.HumanDuration writes it: 5s, 3m2s, 10m, 2d3h, …"""
    micros = (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
    seconds = int(micros / 1_000_000)  # truncates toward zero, like Go's int(d.Seconds())
    # Two seconds of clock skew between machines still reads as "just now".
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return _two_units(minutes, "m", seconds % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return _two_units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return _two_units(days, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return _two_units(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def dig(obj: Mapping[str, Any] | None, *path: str) -> Any:
    """obj[path[0]][path[1]]…, or None where any step is missing or null."""
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def list_at(obj: Mapping[str, Any] | None, *path: str) -> list[Any]:
    value = dig(obj, *path)
    return value if isinstance(value, list) else []


def str_at(obj: Mapping[str, Any] | None, *path: str) -> str:
    value = dig(obj, *path)
    return value if isinstance(value, str) else ""


def int_at(obj: Mapping[str, Any] | None, *path: str, default: int = 0) -> int:
    value = dig(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def name_of(obj: Obj) -> str:
    return str_at(obj, "metadata", "name")


def aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return aware(datetime.fromisoformat(value))
    except ValueError:
        return None


def since(value: Any, now: datetime) -> str:
    t = parse_time(value)
    return "<unknown>" if t is None else human_duration(now - t)


def age(obj: Obj, now: datetime) -> str:
    return since(dig(obj, "metadata", "creationTimestamp"), now)


def _two_units(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}" if small == 0 else f"{big}{big_unit}{small}{small_unit}"


def format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted key=value pairs, `<none>` when empty."""
    if not isinstance(labels, Mapping) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def selector_string(selector: Any) -> str | None:
    """metav1.LabelSelectorAsSelector(selector).String(); None for an invalid selector."""
    if not isinstance(selector, Mapping):
        return ""
    reqs: list[tuple[str, str]] = [
        (k, f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()
    ]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
        if op in ("In", "NotIn") and values:
            word = "in" if op == "In" else "notin"
            reqs.append((key, f"{key} {word} ({','.join(sorted(values))})"))
        elif op == "Exists" and not values:
            reqs.append((key, key))
        elif op == "DoesNotExist" and not values:
            reqs.append((key, f"!{key}"))
        else:
            return None
    return ",".join(text for _, text in sorted(reqs, key=lambda r: r[0]))


def container_cells(obj: Obj) -> list[Cell]:
    containers = list_at(obj, "spec", "template", "spec", "containers")
    return [
        ",".join(str_at(c, "name") for c in containers),
        ",".join(str_at(c, "image") for c in containers),
    ]


def list_with_more(items: list[str], count: int, limit: int = 3, empty: str = "<unset>") -> str:
    text = ",".join(items[:limit])
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or empty


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
