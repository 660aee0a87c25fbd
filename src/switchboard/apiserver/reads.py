"""The registry's read side: objects as the API serves them, one by one and in lists.

An object is stored as compact JSON without its resourceVersion (`codec`).
A get decodes it and fills that in. A list of a kind that is served as
stored, without selectors, never decodes: the store hands back each page
with every value's revision spliced into its metadata and the values
joined (`Store.list_joined`), and the list's head and tail are written
around it. Lists with selectors, and Events (stored in either of two API
versions and converted on the way out), decode each object.

Which revision a read serves follows Kubernetes' "Semantics for get and
list" (API Concepts), as its handlers, `storage.ValidateListOptions` and
the watch cache implement them:

    resourceVersion  match         limit, continue     served
    unset            unset         any                 the newest revision
    "0"              unset         any                 the newest (any would do)
    "0"              NotOlderThan  no continue         the newest (any would do)
    N                unset         no limit            the newest, once it is >= N
    N                unset         limit, no continue  exactly N
    N                NotOlderThan  no continue         the newest, once it is >= N
    N                Exact         no continue         exactly N
    unset or "0"     unset         continue            the token's revision
    N                unset         continue            400: not allowed with continue

A get reads the newest value, once the store is at N or beyond. A store not
yet at N is waited for, up to `resource_version_wait` (Kubernetes' watch cache
waits 3 s); then the read fails with 504 "Too large resource version". Exactly
N at or below the compacted revision is 410 Gone. A combination Kubernetes'
ValidateListOptions refuses is 422 on ListOptions.meta.k8s.io (`check_options`),
before anything is read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from switchboard.api import fielderrors, selectors, validation
from switchboard.api.kinds import Obj, ResourceKind
from switchboard.apiserver import codec, status
from switchboard.store import errors as store_errors
from switchboard.store.protocol import JoinedList, KeyValue, ListResult, Store

EXACT = "Exact"
NOT_OLDER_THAN = "NotOlderThan"
# Kubernetes' watch cache: how long a read waits for a revision the cache has not seen
# (blockTimeout), and the retry it then suggests (resourceVersionTooHighRetrySeconds).
RESOURCE_VERSION_WAIT = 3.0
_RETRY_AFTER_SECONDS = 1
_WAIT_POLL = 0.02  # seconds between looks at the store's revision while waiting
_MAX_RESOURCE_VERSION = 2**64 - 1  # a uint64, as Kubernetes parses it
_INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)


@dataclass(frozen=True, slots=True)
class ListOptions:
    label_selector: selectors.LabelSelector | None = None
    field_selector: selectors.FieldSelector | None = None
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""
    send_initial_events: bool | None = None  # None: the parameter was not sent


def check_options(opts: ListOptions, *, watch: bool) -> None:
    """Refuse what Kubernetes' ValidateListOptions refuses, as its 422 on ListOptions.

    (apimachinery pkg/apis/meta/internalversion/validation/validation.go; the
    WatchList feature counts as on, since watches honour sendInitialEvents.)
    """
    errors = _watch_option_errors(opts) if watch else _list_option_errors(opts)
    if errors:
        raise status.invalid_options("ListOptions", "meta.k8s.io", errors)


def _list_option_errors(opts: ListOptions) -> list[fielderrors.FieldError]:
    errors: list[fielderrors.FieldError] = []
    match = opts.resource_version_match
    if match:
        if not opts.resource_version:
            errors.append(
                fielderrors.forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )
            )
        if opts.continue_token:
            errors.append(
                fielderrors.forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                )
            )
        if match not in (EXACT, NOT_OLDER_THAN):
            errors.append(_match_not_supported(match, (EXACT, NOT_OLDER_THAN, "")))
        if match == EXACT and opts.resource_version == "0":
            errors.append(
                fielderrors.forbidden(
                    "resourceVersionMatch",
                    'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                )
            )
    if opts.send_initial_events is not None:
        errors.append(
            fielderrors.forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list")
        )
    return errors


def _watch_option_errors(opts: ListOptions) -> list[fielderrors.FieldError]:
    errors: list[fielderrors.FieldError] = []
    match = opts.resource_version_match
    if opts.send_initial_events is not None and match != NOT_OLDER_THAN:
        errors.append(
            fielderrors.forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )
        )
    if match:
        if opts.send_initial_events is None:
            errors.append(
                fielderrors.forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is "
                    "provided",
                )
            )
        if match != NOT_OLDER_THAN:
            errors.append(_match_not_supported(match, (NOT_OLDER_THAN,)))
        if opts.continue_token:
            errors.append(
                fielderrors.forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                )
            )
    return errors


def _match_not_supported(match: str, supported: tuple[str, ...]) -> fielderrors.FieldError:
    # Go prints the value with %q and each supported one with strconv.Quote: fielderrors
    # quotes as JSON, which differs for characters outside printable ASCII.
    body = f"Unsupported value: {validation.go_quote(match)}: supported values: " + ", ".join(
        validation.go_quote(v) for v in supported
    )
    return fielderrors.FieldError("FieldValueNotSupported", "resourceVersionMatch", body)


def parse_resource_version(value: str) -> int:
    """A resourceVersion as Kubernetes reads one: "" and "0" are 0, else a decimal uint64.

    Anything else is 400, worded as storage.ValidateListOptions words it around
    APIObjectVersioner.ParseResourceVersion's error (strconv.ParseUint's).
    """
    if value in ("", "0"):
        return 0
    reason = ""
    number = 0
    for ch in value:  # strconv.ParseUint(value, 10, 64), character by character
        if not "0" <= ch <= "9":
            reason = "invalid syntax"
            break
        number = number * 10 + ord(ch) - ord("0")
        if number > _MAX_RESOURCE_VERSION:
            reason = "value out of range"
            break
    if reason:
        quoted = validation.go_quote(value)
        raise status.bad_request(
            f"invalid resource version: resourceVersion: Invalid value: {quoted}: "
            f"strconv.ParseUint: parsing {quoted}: {reason}"
        )
    return number


def matches(kind: ResourceKind, obj: Obj, opts: ListOptions) -> bool:
    """Whether `obj` passes the label and field selectors of `opts`."""
    if opts.label_selector is not None and not opts.label_selector.matches(
        obj.get("metadata", {}).get("labels") or {}
    ):
        return False
    return opts.field_selector is None or opts.field_selector.matches(
        selectors.object_fields(kind.kind, obj)
    )


@dataclass(frozen=True, slots=True)
class _Start:
    """Where a list starts reading: at `revision` (0 = the newest), after `start_after`."""

    revision: int = 0
    start_after: str = ""
    continued: bool = False


@contextlib.contextmanager
def _page_errors(start: _Start) -> Iterator[None]:
    """A page read's store errors as the API answers them, for a list read from `start`."""
    try:
        yield
    except store_errors.Compacted as exc:
        # etcd3 store.go interpretListError: which message depends on whether it pages.
        if start.continued:
            # handleCompactedErrorForPaging: with a token that goes on at the newest revision.
            raise status.gone(
                _INCONSISTENT_CONTINUE, list_continue=codec.encode_continue(-1, start.start_after)
            ) from exc
        raise status.gone("The resourceVersion for the provided list is too old.") from exc
    except store_errors.FutureRevision as exc:
        if not start.continued:  # the store fell back between the wait and the read
            raise status.too_large_resource_version(
                exc.requested, exc.current, _RETRY_AFTER_SECONDS
            ) from exc
        # No list handed out this token: it names a revision not yet written.
        raise status.bad_request(
            f"continue key is not valid: {exc}. The continue parameter must be "
            "the value returned in metadata.continue of a previous list"
        ) from exc


class Reads:
    """Gets and lists of a kind from `store`."""

    store: Store
    # How long a read waits for a resourceVersion the store has not reached (see module doc).
    resource_version_wait: float = RESOURCE_VERSION_WAIT

    async def get(
        self, kind: ResourceKind, namespace: str, name: str, resource_version: str = ""
    ) -> Obj:
        """The object now; with a `resource_version`, once the store has reached it.

        Kubernetes serves a get with a resourceVersion from its watch cache, which
        waits for that revision (cacher.Get, WaitUntilFreshAndGet). An unreadable
        one it answers with 500 (kubernetes#101350); this answers 400, as lists do.
        """
        revision = parse_resource_version(resource_version)
        if revision:
            await self.wait_for(revision)
        kv = await self.store.get(kind.key(namespace, name))
        if kv is None:
            raise status.not_found(kind, name)
        return self._out(kind, kv)

    async def wait_for(self, revision: int) -> None:
        """Return once the store is at `revision` or beyond; 504 if it is not in time.

        As the watch cache's waitUntilFreshAndBlock: Kubernetes then answers
        Too large resource version (storage.NewTooLargeResourceVersionError).
        """
        current = await self.store.current_revision()
        if current >= revision:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.resource_version_wait
        while current < revision:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise status.too_large_resource_version(revision, current, _RETRY_AFTER_SECONDS)
            await asyncio.sleep(min(_WAIT_POLL, remaining))
            current = await self.store.current_revision()

    async def _start(self, opts: ListOptions) -> _Start:
        """The revision a list reads at, and the key it continues after.

        As storage.ValidateListOptions: the continue token is decoded first, a
        resourceVersion beside it is refused, then the resourceVersion is parsed
        and the match picks exactly it or the newest. A revision the store has
        not reached is waited for, as the watch cache does.
        """
        if opts.continue_token:
            revision, start_after = codec.decode_continue(opts.continue_token)
            if opts.resource_version not in ("", "0"):
                raise status.bad_request(
                    "specifying resource version is not allowed when using continue"
                )
            # A negative revision (-1, from a 410's token) goes on at the newest one.
            return _Start(max(revision, 0), start_after, continued=True)
        revision = parse_resource_version(opts.resource_version)
        if not revision:
            return _Start()
        await self.wait_for(revision)
        match = opts.resource_version_match
        if match == EXACT or (not match and opts.limit > 0):
            return _Start(revision)
        return _Start()  # not older than `revision`: the newest, which the wait made so

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
        self, prefix: str, start: _Start, start_after: str, limit: int
    ) -> ListResult:
        with _page_errors(start):
            return await self.store.list(prefix, start.revision, start_after, limit)

    async def list_encoded(
        self, kind: ResourceKind, namespace: str | None, opts: ListOptions
    ) -> bytes:
        """The JSON list body built from the stored bytes; only when `serves_encoded`."""
        start = _Start()
        if opts.continue_token or opts.resource_version:
            start = await self._start(opts)
        prefix = kind.prefix(namespace)
        with _page_errors(start):
            page = await self.store.list_joined(
                prefix, start.revision, start.start_after, opts.limit, codec.LIST_SPLICE
            )
        if page is None:  # a value the store cannot splice: one by one, each encoded
            result = await self._list_page(prefix, start, start.start_after, opts.limit)
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
        start = await self._start(opts)
        start_after = start.start_after
        items: list[Obj] = []
        filtering = opts.label_selector is not None or opts.field_selector is not None
        more = False
        last_key = ""
        while True:
            want = opts.limit - len(items) if opts.limit else 0
            # When filtering, read in pages so a selective list does not load everything at once.
            page = max(want, 500) if filtering and want else want
            result = await self._list_page(prefix, start, start_after, page)
            # Every later page reads at the first page's revision.
            start = _Start(result.revision, start.start_after, start.continued)
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
        meta: dict[str, Any] = {"resourceVersion": str(start.revision)}
        if more:
            meta["continue"] = codec.encode_continue(start.revision, last_key)
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
