"""Objects in and out of the store, and request bodies in from the wire.

The store holds each object as compact JSON without `metadata.resourceVersion`:
the revision that wrote a value *is* its resourceVersion, so it is filled in
on the way out and never goes stale on disk.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import yaml

from switchboard.api.kinds import Obj
from switchboard.apiserver import status
from switchboard.store.protocol import KeyValue

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"

# generateName suffixes use Kubernetes' alphabet: no vowels (no accidental words),
# no confusable characters.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def encode(obj: Obj) -> bytes:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "resourceVersion" in meta:
        meta = dict(meta)
        del meta["resourceVersion"]
        obj = {**obj, "metadata": meta}
    return orjson.dumps(obj)


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
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise status.bad_request(f"error decoding JSON body: {exc}") from exc
    if mt in (YAML, "application/yaml", "application/x-yaml", "text/yaml"):
        try:
            return yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise status.bad_request(f"error decoding YAML body: {exc}") from exc
    if mt == PROTOBUF:
        from switchboard.api import protobuf

        try:
            return protobuf.decode(body)
        except ValueError as exc:
            raise status.bad_request(f"error decoding protobuf body: {exc}") from exc
    raise status.unsupported_media_type(content_type)


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
