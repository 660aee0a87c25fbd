"""Strategic merge patch, applied as the Kubernetes apiserver applies it.

This is the server half of k8s.io/apimachinery/pkg/util/strategicpatch
(`StrategicMergeMapPatch`): kubectl computes the patch, we apply it. A patch
is a JSON object laid over the original like a JSON merge patch (`null`
deletes a key, objects merge key by key, scalars replace), except that:

- lists named in `mergekeys` merge: items are matched on their merge key and
  merged recursively, new items are appended, scalar sets are unioned; every
  other list is replaced whole;
- directives steer the merge:
  `$patch: replace` (the object or list replaces instead of merging),
  `$patch: delete` (the object is emptied; a list item is removed by key),
  `$retainKeys: [..]` (keys of the original object not listed are cleared),
  `$setElementOrder/<list>: [..]` (the order of the merged list),
  `$deleteFromPrimitiveList/<list>: [..]` (scalars removed from a set);
- the result keeps a deterministic order: `$setElementOrder` first, then the
  order of the patch list, then the order of the original, interleaved the
  way Kubernetes interleaves them (`_merge_sorted`).

Where Kubernetes' behaviour is an accident rather than a contract, this
module does the sensible thing and says so:

- A value with no counterpart in the original is merged into an empty
  original, so no directive, `null` or `$patch` marker is ever stored; an
  object marked `$patch: delete` that has nothing to delete is dropped.
- `$deleteFromPrimitiveList/<list>` for a list the original lacks changes
  nothing (older Kubernetes added the values instead).
- A `$setElementOrder/<list>` for a list the merge-key table does not know
  takes the merge key from its own entries (`[{"name": "a"}]` → `name`), so a
  list kubectl knows to merge is never clobbered for want of a table entry.
- `$patch: merge` is rejected, as Kubernetes rejects it.

Errors are `MergeError`; `switchboard.api.patch` maps them to `PatchError`.
The functions here work in place on data the caller owns: `strategic_merge`
copies its inputs first.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from switchboard.api import mergekeys
from switchboard.api.kinds import Obj
from switchboard.api.mergekeys import ListMerge, Struct

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"


class MergeError(ValueError):
    """A strategic merge patch that is malformed or cannot apply to the original."""


def strategic_merge(kind: str, original: Obj, patch: Obj) -> Obj:
    """Apply `patch` to `original` with the merge rules of `kind`; inputs are not modified."""
    return _merge_map(copy.deepcopy(original), copy.deepcopy(patch), mergekeys.schema_for(kind))


def _show(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _same(a: Any, b: Any) -> bool:
    """Equality of JSON scalars as Go compares interface values: true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _scalar_key(value: Any) -> tuple[bool, Any]:
    return (isinstance(value, bool), value)


def _directive_target(key: str, prefix: str) -> str:
    head, sep, target = key.partition("/")
    if head != prefix or not sep or not target:
        kind = "setElementOrder list" if prefix == SET_ELEMENT_ORDER else "primitive list"
        raise MergeError(f"invalid patch format of {kind}: {key!r} should be {prefix}/<field>")
    return target


# ---------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: Struct) -> dict[str, Any]:
    if DIRECTIVE in patch:
        return _map_directive(patch, schema)
    _apply_retain_keys(original, patch)
    _apply_element_orders(original, patch, schema)
    for key, value in patch.items():
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            _delete_from_primitive_list(original, key, value)
            continue
        if key.startswith("$"):
            raise MergeError(f"unknown strategic merge patch directive {key!r}")
        if value is None:
            original.pop(key, None)
            continue
        current = original.get(key)
        if isinstance(value, dict):
            if isinstance(current, dict):
                original[key] = _merge_map(current, value, schema.child(key))
            elif value.get(DIRECTIVE) == "delete":
                original.pop(key, None)  # nothing there to delete
            else:
                original[key] = _merge_map({}, value, schema.child(key))
        elif isinstance(value, list):
            base = current if isinstance(current, list) else []
            original[key] = _merge_list(base, value, schema.list_merge(key))
        else:
            original[key] = value
    return original


def _map_directive(patch: dict[str, Any], schema: Struct) -> dict[str, Any]:
    directive = patch[DIRECTIVE]
    if directive == "replace":
        content = {k: v for k, v in patch.items() if k != DIRECTIVE}
        return _merge_map({}, content, schema)
    if directive == "delete":
        return {}
    raise MergeError(f"unknown patch type: {directive} in map: {_show(patch)}")


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    """Clear the keys of `original` that `$retainKeys` does not list."""
    if RETAIN_KEYS not in patch:
        return
    retained = patch.pop(RETAIN_KEYS)
    if not isinstance(retained, list):
        raise MergeError(f"invalid patch format of retainKeys: {_show(retained)} is not a list")
    keep = {k for k in retained if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER)):
            continue
        if key not in keep:
            raise MergeError(
                f"invalid patch format of retainKeys: the patch sets {key!r}, "
                f"which $retainKeys {_show(retained)} does not list"
            )
    for key in [k for k in original if k not in keep]:
        del original[key]


def _delete_from_primitive_list(original: dict[str, Any], key: str, values: Any) -> None:
    target = _directive_target(key, DELETE_FROM_PRIMITIVE_LIST)
    if not isinstance(values, list) or any(isinstance(v, dict | list) for v in values):
        raise MergeError(f"invalid patch format of primitive list: {key} must list scalars")
    current = original.get(target)
    if isinstance(current, list):
        doomed = {_scalar_key(v) for v in values}
        original[target] = [
            v for v in current if isinstance(v, dict | list) or _scalar_key(v) not in doomed
        ]


# ---------------------------------------------------------------------------
# Lists
# ---------------------------------------------------------------------------


def _merge_list(original: list[Any], patch: list[Any], merge: ListMerge | None) -> list[Any]:
    if merge is None:
        return [_plain(v) for v in patch if not _is_directive_item(v)]
    return _merge_slice(original, patch, merge)


def _is_directive_item(value: Any) -> bool:
    return isinstance(value, dict) and DIRECTIVE in value


def _plain(value: Any) -> Any:
    """A value for an atomic list, taken as given apart from nulls and `$patch` markers."""
    if isinstance(value, dict):
        return {
            k: _plain(v) for k, v in value.items() if v is not None and not _is_directive_item(v)
        }
    if isinstance(value, list):
        return [_plain(v) for v in value if not _is_directive_item(v)]
    return value


def _element_kind(*lists: list[Any]) -> str:
    kinds = set()
    for items in lists:
        for item in items:
            if isinstance(item, list):
                raise MergeError("lists of lists are not supported")
            kinds.add("map" if isinstance(item, dict) else "scalar")
    if len(kinds) > 1:
        raise MergeError(f"list element types are not identical: {_show(list(lists))}")
    return kinds.pop() if kinds else "scalar"


def _merge_slice(original: list[Any], patch: list[Any], merge: ListMerge) -> list[Any]:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind == "scalar":
        if merge.key is not None:
            raise MergeError(
                f"the items of a list merged by {merge.key!r} must be objects: {_show(patch)}"
            )
        merged = list({_scalar_key(v): v for v in original + patch}.values())
        return _ordered(merged, patch, original, None)
    if merge.key is None:
        raise MergeError(f"cannot merge a list of objects without a merge key: {_show(patch)}")
    original, patch = _apply_item_directives(original, patch, merge)
    merged = list(original)
    for item in patch:
        value = _merge_key_value(item, merge.key)
        index = _find(merged, merge.key, value)
        if index is None:
            merged.append(_merge_map({}, item, merge.item or mergekeys.EMPTY))
        else:
            merged[index] = _merge_map(merged[index], item, merge.item or mergekeys.EMPTY)
    return _ordered(merged, patch, original, merge.key)


def _apply_item_directives(
    original: list[Any], patch: list[Any], merge: ListMerge
) -> tuple[list[Any], list[Any]]:
    """Handle `$patch` list items: delete matching originals, or replace the whole list."""
    assert merge.key is not None
    remaining: list[Any] = []
    replace = False
    for item in patch:
        if DIRECTIVE not in item:
            remaining.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            value = _merge_key_value(item, merge.key)
            original = [o for o in original if not (merge.key in o and _same(o[merge.key], value))]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise MergeError("merging lists cannot yet be specified in the patch")
        else:
            raise MergeError(f"unknown patch type: {directive} in map: {_show(item)}")
    if replace:
        schema = merge.item or mergekeys.EMPTY
        return [_merge_map({}, item, schema) for item in remaining], []
    return original, remaining


def _merge_key_value(item: Any, key: str) -> Any:
    if not isinstance(item, dict) or key not in item:
        raise MergeError(f"map: {_show(item)} does not contain declared merge key: {key}")
    return item[key]


def _find(items: list[Any], key: str, value: Any) -> int | None:
    for i, item in enumerate(items):
        if key in item and _same(item[key], value):
            return i
    return None


def _index(items: list[Any], probe: Any, key: str | None) -> int | None:
    """Where `probe` sits in `items`: by merge key for objects, by value for scalars."""
    if key is None:
        return next((i for i, v in enumerate(items) if _same(v, probe)), None)
    wanted = _merge_key_value(probe, key)
    return next(
        (i for i, v in enumerate(items) if _same(_merge_key_value(v, key), wanted)),
        None,
    )


def _sort_by(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    placed = [(i, item) for item in items if (i := _index(order, item, key)) is not None]
    unplaced = [item for item in items if _index(order, item, key) is None]
    return [item for _, item in sorted(placed, key=lambda pair: pair[0])] + unplaced


def _merge_sorted(
    server_only: list[Any], patch_items: list[Any], server_order: list[Any], key: str | None
) -> list[Any]:
    """Interleave: a server-only item goes first when the original had it before the patch item."""
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(patch_items):
        if i >= len(server_only):
            out.append(patch_items[j])
            j += 1
        elif j >= len(patch_items):
            out.append(server_only[i])
            i += 1
        else:
            left = _index(server_order, server_only[i], key)
            right = _index(server_order, patch_items[j], key)
            if left is not None and right is not None and left < right:
                out.append(server_only[i])
                i += 1
            else:
                out.append(patch_items[j])
                j += 1
    return out


def _ordered(
    merged: list[Any], order: list[Any], original: list[Any], key: str | None
) -> list[Any]:
    """Items named in `order` in that order, the rest in their original order, interleaved."""
    if key is not None:
        for item in order + original:
            _merge_key_value(item, key)
    in_order = [item for item in merged if _index(order, item, key) is not None]
    server_only = [item for item in merged if _index(order, item, key) is None]
    return _merge_sorted(
        _sort_by(server_only, original, key), _sort_by(in_order, order, key), original, key
    )


# ---------------------------------------------------------------------------
# $setElementOrder
# ---------------------------------------------------------------------------


def _infer_list_merge(order: list[Any]) -> ListMerge | None:
    """The merge rule a `$setElementOrder` list implies: one shared key, or scalars."""
    if not order:
        return None
    if all(isinstance(v, dict) and len(v) == 1 for v in order):
        keys = {next(iter(v)) for v in order}
        return ListMerge(keys.pop()) if len(keys) == 1 else None
    if all(not isinstance(v, dict | list) for v in order):
        return ListMerge(None)
    return None


def _apply_element_orders(original: dict[str, Any], patch: dict[str, Any], schema: Struct) -> None:
    """Merge each list that has a `$setElementOrder`, order it, and take it out of the patch."""
    for directive_key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(directive_key)
        name = _directive_target(directive_key, SET_ELEMENT_ORDER)
        if not isinstance(order, list):
            raise MergeError(f"invalid patch format of setElementOrder list: {directive_key}")
        merge = schema.list_merge(name) or _infer_list_merge(order)
        if merge is None:
            continue  # not a merged list: the patch list, if any, simply replaces
        current, wanted = original.get(name), patch.get(name)
        if name in original and not isinstance(current, list):
            raise MergeError(f"{directive_key} orders {name!r}, which is not a list")
        if name in patch and not isinstance(wanted, list):
            raise MergeError(f"{directive_key} orders {name!r}, but the patch sets it to {wanted}")
        _check_order(wanted or [], order, merge.key, directive_key)
        if isinstance(wanted, list):
            merged = _merge_slice(current if isinstance(current, list) else [], wanted, merge)
        elif isinstance(current, list):
            merged = current
        else:
            continue
        original[name] = _ordered(merged, order, current or [], merge.key)
        patch.pop(name, None)


def _check_order(patch_list: list[Any], order: list[Any], key: str | None, directive: str) -> None:
    """Every item the patch sets must appear in the order list, in the same relative order."""
    if not patch_list or not order:
        return
    items = [v for v in patch_list if not (isinstance(v, dict) and v.get(DIRECTIVE) == "delete")]
    p = o = 0
    while p < len(items) and o < len(order):
        if _is_directive_item(items[p]):
            p += 1
            continue
        if key is None:
            equal = _same(items[p], order[o])
        else:
            equal = _same(_merge_key_value(items[p], key), _merge_key_value(order[o], key))
        if equal:
            p += 1
        o += 1
    if p < len(items):
        raise MergeError(
            f"the order in patch list {_show(patch_list)} doesn't match "
            f"{directive} list {_show(order)}"
        )
