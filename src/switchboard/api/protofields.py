"""The vocabulary of the protobuf field tables: what a field number can mean.

A table (`protoschema`) maps each field number of a message to a `Field`:
its JSON name, its type, its presence and its shape (one value, a repeated
field, or a map). The presence of each field comes from its Go JSON tag,
because protobuf cannot tell "absent" from "zero" the way JSON can:

    OMITEMPTY  `json:"x,omitempty"` on a string, number, bool, slice or map:
               left out when zero or empty (gogo writes such fields even when
               zero, so the decoder must drop them).
    ALWAYS     no omitempty on a value, or any struct (omitempty never drops a
               struct): always present; the zero value when absent. A zero
               metav1.Time is `null`, which is why kubectl's JSON carries
               `"creationTimestamp": null` and `"status": {}`.
    POINTER    a pointer with omitempty (`replicas`, `securityContext`):
               present exactly when it is on the wire, zero or not.
    NULLABLE   a pointer, slice or map without omitempty (`selector` of a
               Deployment): `null` when absent.

A json name of "" marks a Go struct embedded inline (`json:",inline"`): its
fields are merged into the parent, as Probe's ProbeHandler is.

Types are the scalars below (no table needs bytes, floats or MicroTime yet),
the Kubernetes value types converted by hand (IntOrString, Quantity, Time,
FieldsV1), or the name of another table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

STRING: Final = "string"
INT32: Final = "int32"
INT64: Final = "int64"
BOOL: Final = "bool"
SCALARS: Final = frozenset({STRING, INT32, INT64, BOOL})

# Messages with a JSON form of their own rather than an object.
INT_OR_STRING: Final = "IntOrString"  # k8s.io.apimachinery.pkg.util.intstr.IntOrString
QUANTITY: Final = "Quantity"  # k8s.io.apimachinery.pkg.api.resource.Quantity
TIME: Final = "Time"  # k8s.io.apimachinery.pkg.apis.meta.v1.Time
FIELDS_V1: Final = "FieldsV1"  # k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1
SPECIALS: Final = frozenset({INT_OR_STRING, QUANTITY, TIME, FIELDS_V1})


class Presence(enum.Enum):
    OMITEMPTY = "omitempty"
    ALWAYS = "always"
    POINTER = "pointer"
    NULLABLE = "nullable"


class Shape(enum.Enum):
    ONE = "one"
    LIST = "list"  # repeated
    MAP = "map"  # map<string, type>: entries with key = 1, value = 2


@dataclass(frozen=True, slots=True)
class Field:
    json: str  # "" for a struct embedded inline
    type: str
    presence: Presence
    shape: Shape = Shape.ONE


OMITEMPTY: Final = Presence.OMITEMPTY
ALWAYS: Final = Presence.ALWAYS
POINTER: Final = Presence.POINTER
NULLABLE: Final = Presence.NULLABLE


def field(json: str, type_: str = STRING, presence: Presence | None = None) -> Field:
    """One value; structs default to ALWAYS (omitempty never drops them), scalars to OMITEMPTY."""
    if presence is None:
        presence = OMITEMPTY if type_ in SCALARS else ALWAYS
    return Field(json, type_, presence)


def list_of(json: str, type_: str = STRING, presence: Presence = OMITEMPTY) -> Field:
    return Field(json, type_, presence, Shape.LIST)


def map_of(json: str, type_: str = STRING, presence: Presence = OMITEMPTY) -> Field:
    return Field(json, type_, presence, Shape.MAP)


def inline(type_: str) -> Field:
    return Field("", type_, ALWAYS)
