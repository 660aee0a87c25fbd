"""Objects in and out of the store, and request bodies in from the wire.

The store holds each object as compact JSON without `metadata.resourceVersion`:
the revision that wrote a value *is* its resourceVersion, so it is filled in
on the way out and never goes stale on disk.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import yaml

from switchboard.api.kinds import Obj
from switchboard.apiserver import status
from switchboard.store.protocol import KeyValue, Splice

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"

# generateName suffixes use Kubernetes' alphabet: no vowels (no accidental words),
# no confusable characters.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


_META_PREFIX = b'{"metadata":{'
_META_END = len(_META_PREFIX)
_SPLICE = b'{"metadata":{"resourceVersion":"%d",'
_SPLICE_ALONE = b'{"metadata":{"resourceVersion":"%d"'
# `with_resource_version` done by the store to a page of a list, joined as a JSON array's inside.
LIST_SPLICE = Splice(
    opening=_META_PREFIX,
    closer=b"}",
    head=b'{"metadata":{"resourceVersion":"',
    tail=b'",',
    separator=b",",
)


def encode(obj: Obj) -> bytes:
    """Stored form: metadata first and without resourceVersion (see `with_resource_version`)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "resourceVersion" in meta:
        meta = {k: v for k, v in meta.items() if k != "resourceVersion"}
    return orjson.dumps({"metadata": meta, **{k: v for k, v in obj.items() if k != "metadata"}})


def with_resource_version(value: bytes, revision: int) -> bytes | None:
    """The stored bytes with resourceVersion spliced into metadata, or None if not possible.

    Lists and watches serve most objects this way, without decoding and
    re-encoding each one: `encode` always writes metadata first, so its
    opening is at a known place. Values stored in another shape give None.
    """
    if not value.startswith(_META_PREFIX):
        return None
    if value[_META_END : _META_END + 1] == b"}":  # empty metadata: no comma after the splice
        return value.replace(_META_PREFIX, _SPLICE_ALONE % revision, 1)
    return value.replace(_META_PREFIX, _SPLICE % revision, 1)


def join_with_resource_versions(
    kvs: Iterable[KeyValue], otherwise: Callable[[KeyValue], bytes]
) -> bytes:
    """Each value with its resourceVersion spliced in (`with_resource_version`), comma-joined.

    The inside of a list's `items` array. `otherwise` encodes a value that
    cannot be spliced. This runs once per object of a list, so the test is
    inlined in one comprehension (a call per object cost a list of 10,000
    about half as much again), and the splice is a `replace` of the opening,
    which finds it at once: slicing each value through a memoryview and
    formatting it took twice as long.
    """
    return b",".join(
        [
            kv.value.replace(_META_PREFIX, _SPLICE % kv.mod_revision, 1)
            if kv.value.startswith(_META_PREFIX) and kv.value[_META_END : _META_END + 1] != b"}"
            else otherwise(kv)
            for kv in kvs
        ]
    )


def decode(kv: KeyValue, revision: int | None = None) -> Obj:
    obj: Obj = orjson.loads(kv.value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(
        kv.mod_revision if revision is None else revision
    )
    return obj


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def generate_name(prefix: str) -> str:
    # Kubernetes trims the prefix so the result stays a valid 63-character name.
    return prefix[:58] + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def parse_body(body: bytes, content_type: str) -> Any:
    """Decode a request body by its media type; raise a 400/415 APIError when unreadable."""
    mt = media_type(content_type) or JSON
    if mt in (JSON, "application/merge-patch+json", "application/strategic-merge-patch+json"):
        try:
            return check_shape(orjson.loads(body), len(body))
        except orjson.JSONDecodeError as exc:
            raise status.bad_request(f"error decoding JSON body: {exc}") from exc
    if mt in (YAML, "application/yaml", "application/x-yaml", "text/yaml"):
        try:
            value = check_shape(yaml.safe_load(body), len(body))
            # Through JSON, as Kubernetes reads YAML: dates become strings, and what JSON
            # cannot hold (a lone surrogate, bytes, a set) is refused here, not at storage.
            return orjson.loads(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
        except yaml.YAMLError as exc:
            raise status.bad_request(f"error decoding YAML body: {exc}") from exc
        except orjson.JSONEncodeError as exc:
            raise status.bad_request(f"error decoding YAML body: {exc}") from exc
        except RecursionError as exc:
            raise status.bad_request(
                f"error decoding YAML body: nested deeper than {MAX_DEPTH} levels"
            ) from exc
    if mt == PROTOBUF:
        from switchboard.api import protobuf

        try:
            return protobuf.decode(body)
        except ValueError as exc:
            raise status.bad_request(f"error decoding protobuf body: {exc}") from exc
    raise status.unsupported_media_type(content_type)


MAX_DEPTH = 100  # far beyond any served kind; every later step walks objects recursively


def check_shape(value: Any, size: int, what: str = "the request body") -> Any:
    """Return a decoded body, or raise 400 if it nests too deep or holds more values than bytes.

    Text decodes to at most one value per byte, unless YAML aliases repeat a part: a few
    bytes of aliases of aliases expand a millionfold, and an alias inside its own anchor
    never ends. Walked with a stack, as the recursive steps after this one cannot.
    """
    if _within_limits(value, size):
        return value
    # Which limit is reported depends on the order values are met in: this walk's.
    stack: list[tuple[Any, int]] = [(value, 1)]
    budget = size + 1
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise status.bad_request(
                f"{what} expands to more values than it has bytes: "
                "YAML aliases may not multiply the document"
            )
        if depth > MAX_DEPTH:
            raise status.bad_request(f"{what} nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return value


_CONTAINERS = (dict, list)  # a tuple: isinstance takes it faster than `dict | list`


def _within_limits(value: Any, size: int) -> bool:
    """True when `check_shape` would pass `value`; False when it may not, or cannot say.

    The count and the depths are `check_shape`'s, but only lists and objects are
    stacked, so the body every request has costs a fraction of the full walk. A
    subclass of either, which might count its values otherwise, is left to that walk.
    """
    budget = size  # `check_shape` allows size + 1 values; the root is one
    stack: list[tuple[Any, int]] = []
    if isinstance(value, _CONTAINERS):
        stack.append((value, 1))
    while stack:
        node, depth = stack.pop()
        if type(node) not in _CONTAINERS:
            return False
        if not node:
            continue
        budget -= len(node)
        if budget < 0 or depth >= MAX_DEPTH:  # its values sit one level deeper
            return False
        for child in node.values() if type(node) is dict else node:
            if isinstance(child, _CONTAINERS):
                stack.append((child, depth + 1))
    return budget >= 0


def check_json_shape(body: bytes) -> None:
    """`check_shape` for a body that is JSON; one that is not is left to its reader to report."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    check_shape(value, len(body))


def encode_continue(revision: int, last_key: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise status.bad_request(
            f"continue key is not valid: {exc}. The continue parameter must be "
            "the value returned in metadata.continue of a previous list"
        ) from exc
