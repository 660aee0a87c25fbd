"""PATCH bodies applied to objects: JSON Patch, JSON Merge Patch, strategic merge patch.

The apiserver hands a PATCH request to `apply_patch(kind, original, body,
content_type)` and gets the patched object back; what it then validates and
stores is its business. The three patch types are the ones kubectl sends:

- `application/json-patch+json`: RFC 6902 operations (add, remove, replace,
  move, copy, test) addressed by RFC 6901 JSON pointers (`~0` is `~`, `~1`
  is `/`, `-` is the end of an array). Written here rather than taken from a
  library, to keep the error texts and the no-mutation guarantee ours.
- `application/merge-patch+json`: RFC 7386; `kubectl scale` and
  `kubectl patch --type merge` send it.
- `application/strategic-merge-patch+json`: Kubernetes' own, what
  `kubectl apply` sends for an existing object; see `strategic` for the
  algorithm and `mergekeys` for which lists merge by which key.

Server-side apply (`application/apply-patch+yaml`) is not supported.

Every function copies what it is given: inputs are never modified, and the
result shares no structure with them.

A JSON Patch can make an object far larger than the request that carries
it: a `copy` of the whole document into itself doubles it, so twenty copies
make it a million times larger. Like the Kubernetes apiserver, `json_patch`
refuses more than `MAX_JSON_PATCH_OPERATIONS` operations (413) and stops once
its copies together have added more than `MAX_COPY_BYTES` (422), before the
object is ever built. What the patched object may weigh in the end is the
apiserver's cap on stored objects, not this module's.

Exception tree:

    ValueError
     └── PatchError   .status: 400 malformed patch, 413 too many JSON Patch
                      operations, 415 unsupported patch type,
                      422 a well-formed JSON Patch that cannot apply
                      (failed test, missing path, copies over MAX_COPY_BYTES)
"""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson

from switchboard.api import strategic
from switchboard.api.kinds import Obj

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
SUPPORTED_CONTENT_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)

# Kubernetes' maxJSONPatchOperations (apiserver endpoints/handlers/patch.go).
MAX_JSON_PATCH_OPERATIONS = 10_000
# Kubernetes' default JSONPatchMaxCopyBytes, which it sets as json-patch's
# AccumulatedCopySizeLimit: twice etcd's default 1.5 MiB request limit, because the
# JSON being patched can be about twice the size of the protobuf etcd stores.
MAX_COPY_BYTES = 3 * 1024 * 1024


class PatchError(ValueError):
    """A patch that is malformed, of an unsupported type, or that cannot apply."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def apply_patch(kind: str, original: Obj, patch_body: bytes, content_type: str) -> Obj:
    """Apply a PATCH request body of `content_type` to `original`, an object of `kind`."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == APPLY_PATCH:
        raise PatchError(
            "server-side apply (application/apply-patch+yaml) is not supported: "
            "use client-side `kubectl apply` or another patch type",
            status=415,
        )
    if media_type not in SUPPORTED_CONTENT_TYPES:
        raise PatchError(
            f"unsupported patch content type {content_type!r}: "
            f"send one of {', '.join(SUPPORTED_CONTENT_TYPES)}",
            status=415,
        )
    try:
        document = orjson.loads(patch_body)
    except orjson.JSONDecodeError as exc:
        raise PatchError(f"the patch body is not valid JSON: {exc}") from exc
    if media_type == JSON_PATCH:
        result = json_patch(original, document)
    else:
        if not isinstance(document, dict):
            raise PatchError(f"a {media_type} body must be a JSON object, not {_type(document)}")
        if media_type == MERGE_PATCH:
            result = merge_patch(original, document)
        else:
            result = strategic_merge_patch(kind, original, document)
    if not isinstance(result, dict):
        raise PatchError(
            f"the patched object must be a JSON object, not {_type(result)}", status=422
        )
    return result


def strategic_merge_patch(kind: str, original: Obj, patch: Obj) -> Obj:
    """Apply a decoded strategic merge patch with the merge rules of `kind`."""
    try:
        return strategic.strategic_merge(kind, original, patch)
    except strategic.MergeError as exc:
        raise PatchError(str(exc)) from exc


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _show(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------------------
# JSON Merge Patch (RFC 7386)
# ---------------------------------------------------------------------------


def merge_patch(document: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, `null` removes a key, anything else replaces."""
    return _merge_into(copy.deepcopy(document), patch)


def _merge_into(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_into(result.get(key), value)
    return result


# ---------------------------------------------------------------------------
# JSON Patch (RFC 6902) and JSON Pointer (RFC 6901)
# ---------------------------------------------------------------------------

_ABSENT = object()


def json_patch(document: Any, operations: Any) -> Any:
    """Apply RFC 6902 operations in order; any failing operation fails the whole patch."""
    if not isinstance(operations, list):
        raise PatchError(f"a JSON Patch must be an array of operations, not {_type(operations)}")
    if not all(isinstance(op, dict) for op in operations):
        raise PatchError("every operation of a JSON Patch must be a JSON object")
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        # Kubernetes' words, with the prefix its RequestEntityTooLarge errors carry.
        raise PatchError(
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(operations)}",
            status=413,
        )
    result = copy.deepcopy(document)
    copied = _CopyBudget()
    for op in operations:
        result = _apply_operation(result, op, copied)
    return result


class _CopyBudget:
    """The bytes the copies of one patch have added so far, as json-patch counts them."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0

    def spend(self, value: Any, source: str) -> None:
        # json-patch counts each copied value at its compact JSON length and checks the
        # running total before the copy is made, so a refused copy never gets built.
        try:
            self.total += len(orjson.dumps(value))
        except orjson.JSONEncodeError as exc:  # only nesting deeper than orjson can write
            raise PatchError(
                f'copy operation does not apply: the value at "{source}" nests too deeply'
            ) from exc
        if self.total > MAX_COPY_BYTES:
            # json-patch's message for its AccumulatedCopySizeError, word for word.
            raise PatchError(
                "Unable to complete the copy, the accumulated size increase of copy is "
                f"{self.total}, exceeding the limit {MAX_COPY_BYTES}",
                status=422,
            )


def _apply_operation(doc: Any, op: dict[str, Any], copied: _CopyBudget) -> Any:
    name = op.get("op")
    if name not in ("add", "remove", "replace", "move", "copy", "test"):
        raise PatchError(f"unknown JSON Patch operation {_show(name)} in {_show(op)}", status=422)
    path = _member(op, "path")
    tokens = _parse_pointer(path)
    if name == "add":
        return _add(doc, tokens, copy.deepcopy(_value(op)), path)
    if name == "remove":
        _remove(doc, tokens, path)
        return doc
    if name == "replace":
        value = copy.deepcopy(_value(op))
        if not tokens:
            return value
        parent, last = _parent(doc, tokens, path, "replace")
        _existing_slot(parent, last, path, "replace")
        if isinstance(parent, dict):
            parent[last] = value
        else:
            parent[_array_index(last, len(parent), path, "replace")] = value
        return doc
    if name == "test":
        actual = _get(doc, tokens, path, "test")
        expected = _value(op)
        if not _json_equal(actual, expected):
            raise PatchError(
                f'test failed: the value at "{path}" is {_show(actual)}, not {_show(expected)}',
                status=422,
            )
        return doc
    source = _member(op, "from")
    from_tokens = _parse_pointer(source)
    value = _get(doc, from_tokens, source, name)
    if name == "copy":
        copied.spend(value, source)
        return _add(doc, tokens, copy.deepcopy(value), path)
    if tokens[: len(from_tokens)] == from_tokens and len(tokens) > len(from_tokens):
        raise PatchError(f'cannot move "{source}" into its own child "{path}"', status=422)
    if tokens == from_tokens:
        return doc
    _remove(doc, from_tokens, source)
    return _add(doc, tokens, value, path)


def _member(op: dict[str, Any], name: str) -> str:
    value = op.get(name)
    if not isinstance(value, str):
        raise PatchError(f'operation {_show(op)} needs a string "{name}"', status=422)
    return value


def _value(op: dict[str, Any]) -> Any:
    if "value" not in op:
        raise PatchError(f'operation {_show(op)} needs a "value"', status=422)
    return op["value"]


def _parse_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f'JSON pointer "{pointer}" must be empty or start with "/"', status=422)
    tokens = []
    for raw in pointer[1:].split("/"):
        if "~" in raw.replace("~0", "").replace("~1", ""):
            raise PatchError(
                f'JSON pointer "{pointer}" has a "~" not followed by 0 or 1', status=422
            )
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tokens


def _array_index(token: str, length: int, path: str, op: str, *, end_ok: bool = False) -> int:
    if token == "-" and end_ok:
        return length
    if not token.isdigit() or not token.isascii() or (len(token) > 1 and token[0] == "0"):
        raise PatchError(f'{op}: "{token}" in "{path}" is not an array index', status=422)
    index = int(token)
    if index > length or (index == length and not end_ok):
        raise PatchError(f'{op}: index {index} in "{path}" is out of bounds', status=422)
    return index


def _child(node: Any, token: str, path: str, op: str) -> Any:
    if isinstance(node, dict):
        found = node.get(token, _ABSENT)
    elif isinstance(node, list):
        found = node[_array_index(token, len(node), path, op)]
    else:
        found = _ABSENT
    if found is _ABSENT:
        raise PatchError(f'{op} operation does not apply: "{path}" does not exist', status=422)
    return found


def _get(doc: Any, tokens: list[str], path: str, op: str) -> Any:
    node = doc
    for token in tokens:
        node = _child(node, token, path, op)
    return node


def _parent(doc: Any, tokens: list[str], path: str, op: str) -> tuple[Any, str]:
    parent = _get(doc, tokens[:-1], path, op)
    if not isinstance(parent, dict | list):
        raise PatchError(f'{op} operation does not apply: "{path}" does not exist', status=422)
    return parent, tokens[-1]


def _existing_slot(parent: Any, last: str, path: str, op: str) -> None:
    if isinstance(parent, dict) and last not in parent:
        raise PatchError(f'{op} operation does not apply: "{path}" does not exist', status=422)


def _add(doc: Any, tokens: list[str], value: Any, path: str) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens, path, "add")
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent.insert(_array_index(last, len(parent), path, "add", end_ok=True), value)
    return doc


def _remove(doc: Any, tokens: list[str], path: str) -> None:
    if not tokens:
        raise PatchError(
            "remove operation does not apply: cannot remove the whole document", status=422
        )
    parent, last = _parent(doc, tokens, path, "remove")
    _existing_slot(parent, last, path, "remove")
    if isinstance(parent, dict):
        del parent[last]
    else:
        del parent[_array_index(last, len(parent), path, "remove")]


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (1 equals 1.0), but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    return bool(a == b)
