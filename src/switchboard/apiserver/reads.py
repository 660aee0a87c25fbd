"""The registry's read side: objects as the API serves them, one by one and in lists.

An object is stored as compact JSON without its resourceVersion (`codec`).
A get decodes it and fills that in. A list of a kind that is served as
stored, without selectors, never decodes: the store hands back each page
with every value's revision spliced into its metadata and the values
joined (`Store.list_joined`), and the list's head and tail are written
around it. Lists with selectors, and Events (stored in either of two API
versions and converted on the way out), decode each object.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from switchboard.api import selectors
from switchboard.api.kinds import Obj, ResourceKind
from switchboard.apiserver import codec, status
from switchboard.store import errors as store_errors
from switchboard.store.protocol import JoinedList, KeyValue, ListResult, Store


@dataclass(frozen=True, slots=True)
class ListOptions:
    label_selector: selectors.LabelSelector | None = None
    field_selector: selectors.FieldSelector | None = None
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""


def matches(kind: ResourceKind, obj: Obj, opts: ListOptions) -> bool:
    """Whether `obj` passes the label and field selectors of `opts`."""
    if opts.label_selector is not None and not opts.label_selector.matches(
        obj.get("metadata", {}).get("labels") or {}
    ):
        return False
    return opts.field_selector is None or opts.field_selector.matches(
        selectors.object_fields(kind.kind, obj)
    )


@contextlib.contextmanager
def _page_errors() -> Iterator[None]:
    """A page read's store errors as the API answers them."""
    try:
        yield
    except store_errors.Compacted as exc:
        raise status.gone(
            "The provided continue parameter is too old to display a consistent list "
            "result. You can start a new list without the continue parameter."
        ) from exc
    except store_errors.FutureRevision as exc:
        # No list handed out this token: it names a revision not yet written.
        raise status.bad_request(
            f"continue key is not valid: {exc}. The continue parameter must be "
            "the value returned in metadata.continue of a previous list"
        ) from exc


class Reads:
    """Gets and lists of a kind from `store`."""

    store: Store

    async def get(self, kind: ResourceKind, namespace: str, name: str) -> Obj:
        kv = await self.store.get(kind.key(namespace, name))
        if kv is None:
            raise status.not_found(kind, name)
        return self._out(kind, kv)

    def encoded(self, kind: ResourceKind, kv: KeyValue, revision: int = 0) -> bytes:
        """The object as JSON bytes at `revision` (0 = its own), from the stored bytes if it can."""
        data = self.stored_bytes(kind, kv, revision)
        return codec.dumps(self.decoded(kind, kv, revision)) if data is None else data

    @staticmethod
    def stored_bytes(kind: ResourceKind, kv: KeyValue, revision: int = 0) -> bytes | None:
        """The stored bytes with the resourceVersion spliced in, if this kind is served so."""
        if not _served_as_stored(kind):
            return None
        return codec.with_resource_version(kv.value, revision or kv.mod_revision)

    def decoded(self, kind: ResourceKind, kv: KeyValue, revision: int = 0) -> Obj:
        """The object at `revision` (0 = its own), as this kind's API version shows it."""
        obj = self._out(kind, kv)
        if revision:
            obj["metadata"]["resourceVersion"] = str(revision)
        return obj

    @staticmethod
    def serves_encoded(kind: ResourceKind, opts: ListOptions) -> bool:
        """Whether stored bytes can be served as they are (no selector, no conversion)."""
        return (
            opts.label_selector is None and opts.field_selector is None and _served_as_stored(kind)
        )

    async def _list_page(
        self, prefix: str, revision: int, start_after: str, limit: int
    ) -> ListResult:
        with _page_errors():
            return await self.store.list(prefix, revision, start_after, limit)

    async def list_encoded(
        self, kind: ResourceKind, namespace: str | None, opts: ListOptions
    ) -> bytes:
        """The JSON list body built from the stored bytes; only when `serves_encoded`."""
        start_after = ""
        revision = 0
        if opts.continue_token:
            revision, start_after = codec.decode_continue(opts.continue_token)
        prefix = kind.prefix(namespace)
        with _page_errors():
            page = await self.store.list_joined(
                prefix, revision, start_after, opts.limit, codec.LIST_SPLICE
            )
        if page is None:  # a value the store cannot splice: one by one, each encoded
            result = await self._list_page(prefix, revision, start_after, opts.limit)
            items = codec.join_with_resource_versions(
                result.items, lambda kv: self.encoded(kind, kv)
            )
            last = result.items[-1].key if result.items else ""
            page = JoinedList(items, len(result.items), last, result.revision, result.more)
        meta: dict[str, Any] = {"resourceVersion": str(page.revision)}
        if opts.limit and page.more and page.count:
            meta["continue"] = codec.encode_continue(page.revision, page.last_key)
        head = b'{"kind":"%sList","apiVersion":"%s","metadata":%s,"items":[' % (
            kind.kind.encode(),
            kind.api_version.encode(),
            codec.dumps(meta),
        )
        # Joined, not %-formatted: bytes formatting copies a large argument far more slowly.
        return b"".join((head, page.body, b"]}"))

    async def list(self, kind: ResourceKind, namespace: str | None, opts: ListOptions) -> Obj:
        prefix = kind.prefix(namespace)
        start_after = ""
        revision = 0
        if opts.continue_token:
            revision, start_after = codec.decode_continue(opts.continue_token)
        items: list[Obj] = []
        filtering = opts.label_selector is not None or opts.field_selector is not None
        more = False
        last_key = ""
        while True:
            want = opts.limit - len(items) if opts.limit else 0
            # When filtering, read in pages so a selective list does not load everything at once.
            page = max(want, 500) if filtering and want else want
            result = await self._list_page(prefix, revision, start_after, page)
            revision = result.revision
            for kv in result.items:
                obj = self._out(kind, kv)
                last_key = kv.key
                if matches(kind, obj, opts):
                    items.append(obj)
                    if opts.limit and len(items) >= opts.limit:
                        break
            if opts.limit and len(items) >= opts.limit:
                more = last_key != result.items[-1].key or result.more
                break
            if not result.more:
                break
            start_after = result.items[-1].key
            await asyncio.sleep(0)  # a page may be read on the loop: let others run between
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if more:
            meta["continue"] = codec.encode_continue(revision, last_key)
        return {
            "kind": f"{kind.kind}List",
            "apiVersion": kind.api_version,
            "metadata": meta,
            "items": items,
        }

    def _out(self, kind: ResourceKind, kv: KeyValue) -> Obj:
        obj = codec.decode(kv)
        # events.k8s.io/v1 and v1 Events share storage; each answers in its own apiVersion.
        obj["apiVersion"] = kind.api_version
        obj["kind"] = kind.kind
        if kind.kind == "Event":
            _event_field_names(obj, events_v1=kind.group == "events.k8s.io")
        return obj


# Event fields the two versions name differently: (events.k8s.io/v1, v1), as Kubernetes
# converts them. An Event is stored as written and renamed on the way out, so a client
# of either version reads the names its models know.
_EVENT_RENAMES = (
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
)


def _served_as_stored(kind: ResourceKind) -> bool:
    # Events are stored in either of two API versions and converted on the way out.
    return kind.kind != "Event"


def _event_field_names(obj: Obj, *, events_v1: bool) -> None:
    for new_name, old_name in _EVENT_RENAMES:
        src, dst = (old_name, new_name) if events_v1 else (new_name, old_name)
        if src in obj:
            value = obj.pop(src)
            obj.setdefault(dst, value)
