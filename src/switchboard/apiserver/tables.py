"""Server-side Tables: what `kubectl get` prints, computed as kube-apiserver computes it.

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints the
columns it gets back verbatim: it upper-cases their names, shows columns of
priority 1 only under `-o wide`, and adds NAMESPACE (under `-A`) and LABELS
from each row's embedded object metadata. Were the server to send a plain list
instead, kubectl would print NAME and AGE alone, so all column logic lives
here, in the server.

This module builds the meta.k8s.io/v1 Table around the rows; what the
columns are and what each object's cells say is the business of the kind's
printer (`printers`, with `podcells` for pods, out of `tablecells`' parts).
All of it is pure: `now` is an argument, never the clock.

Each row's `object` follows `?includeObject=`: `Metadata`, kubectl's default,
embeds a PartialObjectMetadata; `Object` embeds the whole object; `None`
leaves it out. Anything else is a `ValueError` for the caller to turn into a
400.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NotRequired, TypedDict

from switchboard.api import kinds
from switchboard.apiserver import printers, tablecells
from switchboard.apiserver.tablecells import Cell, Column, Obj, RowCondition

INCLUDE_OBJECT = ("None", "Metadata", "Object")


class Row(TypedDict):
    cells: list[Cell]
    conditions: NotRequired[list[RowCondition]]
    object: NotRequired[Obj]


class Table(TypedDict):
    kind: str
    apiVersion: str
    metadata: dict[str, Any]
    columnDefinitions: list[Column]
    rows: list[Row]


def columns(kind: kinds.ResourceKind) -> list[Column]:
    """The column definitions of `kind`, wide ones (priority 1) included."""
    return [c.copy() for c in printers.printer_for(kind).columns]


def row(
    kind: kinds.ResourceKind, obj: Obj, now: datetime, *, include_object: str = "Metadata"
) -> Row:
    """One object's TableRow; a watch event's object is `table(kind, [obj], now=now)`."""
    _check_include_object(include_object)
    return _row(printers.printer_for(kind), kind, obj, tablecells.aware(now), include_object)


def table(
    kind: kinds.ResourceKind,
    objects: Iterable[Obj],
    *,
    now: datetime,
    list_meta: Mapping[str, Any] | None = None,
    include_object: str = "Metadata",
) -> Table:
    """A meta.k8s.io/v1 Table of `objects`, one row each, in the order given.

    `list_meta` is the list's metadata (resourceVersion, continue,
    remainingItemCount); for a single-object GET pass the object's
    resourceVersion, as kube-apiserver does.
    """
    _check_include_object(include_object)
    printer = printers.printer_for(kind)
    now = tablecells.aware(now)
    meta = {
        k: list_meta[k]
        for k in ("resourceVersion", "continue", "remainingItemCount")
        if list_meta and list_meta.get(k) not in (None, "")
    }
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": [c.copy() for c in printer.columns],
        "rows": [_row(printer, kind, obj, now, include_object) for obj in objects],
    }


def _row(
    printer: printers.Printer,
    kind: kinds.ResourceKind,
    obj: Obj,
    now: datetime,
    include_object: str,
) -> Row:
    out: Row = {"cells": printer.cells(obj, now)}
    if printer.conditions is not None and (conditions := printer.conditions(obj)):
        out["conditions"] = conditions
    if include_object == "Metadata":
        out["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": copy.deepcopy(obj.get("metadata") or {}),
        }
    elif include_object == "Object":
        whole = copy.deepcopy(obj)
        whole.setdefault("apiVersion", kind.api_version)
        whole.setdefault("kind", kind.kind)
        out["object"] = whole
    return out


def _check_include_object(value: str) -> None:
    if value not in INCLUDE_OBJECT:
        raise ValueError(f"includeObject must be one of None, Metadata or Object, not {value!r}")
