"""The protobuf wire format, read-only: just enough to walk a message.

A protobuf message is a flat sequence of fields. Each field starts with a
varint key, `number << 3 | wire_type`, followed by its payload:

    wire type 0  varint            int32, int64, bool (and enums, unused by Kubernetes)
    wire type 1  8 bytes, LE       fixed64, double
    wire type 2  varint length + bytes   string, bytes, nested message, packed list
    wire type 5  4 bytes, LE       fixed32, float

Wire types 3 and 4 (groups) are long deprecated and never produced by
Kubernetes; they are rejected. The reader knows nothing about schemas: it
yields `(number, wire_type, value)` with the varint or fixed value as an
unsigned int and length-delimited payloads as bytes, and leaves meaning to the
caller (`protoschema` says what each number is, `protobuf` converts). Every
error is a `WireError` naming the byte offset, so a truncated or corrupt body
fails loudly instead of decoding into something plausible.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

VARINT: Final = 0
FIXED64: Final = 1
LENGTH_DELIMITED: Final = 2
FIXED32: Final = 5

_MAX_VARINT_BYTES: Final = 10


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Read the varint starting at `pos`; return (unsigned value, position after it)."""
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise WireError(f"truncated varint at byte {pos}")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value & 0xFFFF_FFFF_FFFF_FFFF, pos + i + 1
    raise WireError(f"varint longer than {_MAX_VARINT_BYTES} bytes at byte {pos}")


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for each field of one message, in order."""
    pos = 0
    end = len(buf)
    while pos < end:
        start = pos
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 0x7
        if number == 0:
            raise WireError(f"field number 0 at byte {start}")
        value: int | bytes
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire_type == LENGTH_DELIMITED:
            length, pos = read_varint(buf, pos)
            if length > end - pos:
                raise WireError(
                    f"field {number} at byte {start} claims {length} bytes, {end - pos} remain"
                )
            value = bytes(buf[pos : pos + length])
            pos += length
        elif wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
            if size > end - pos:
                raise WireError(f"truncated fixed{size * 8} field {number} at byte {start}")
            value = int.from_bytes(buf[pos : pos + size], "little")
            pos += size
        else:
            raise WireError(f"unsupported wire type {wire_type} for field {number} at byte {start}")
        yield number, wire_type, value


def iter_packed_varints(buf: bytes) -> Iterator[int]:
    """Yield the unsigned varints of a packed repeated scalar field."""
    pos = 0
    while pos < len(buf):
        value, pos = read_varint(buf, pos)
        yield value


def as_int64(value: int) -> int:
    """A varint as a signed 64-bit integer (negative numbers travel as two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def as_int32(value: int) -> int:
    """A varint as a signed 32-bit integer; Go sign-extends negative int32s to 64 bits."""
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value >= 1 << 31 else value
