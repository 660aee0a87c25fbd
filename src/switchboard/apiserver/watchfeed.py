"""From store events to one watcher's watch events, encoded once for every watcher.

A `Feed` follows one kind's keys for one watch stream and decides, event by
event, what that watcher is told: with a label or field selector an object
that starts or stops matching becomes ADDED or DELETED, as in Kubernetes, and
a watch on one name sees only that object. What the event says is encoded
once, not once per watcher: the store hands one Event object to every watch
(`store.protocol.Watch.listen`), and `_Encodings` keeps what was made for the
event in hand — the object's bytes (spliced from the stored bytes when the
kind allows), its decoded form for selectors, and each event line — so a
hundred watchers of one kind cost one encoding per event.

A feed is read in one of two ways. `next` is for catching up on the history
since the watch's resourceVersion, one awaited event at a time, so the stream
can apply back-pressure. Once caught up, `listen` hands every later line to a
callback from inside the store's dispatch: no task per watcher per event.
When the callback says the watcher has fallen behind, the feed stops and
`resume` reopens it from the last revision it handed out, catching up from
the log again: the log is the buffer, so a watcher that stops reading holds
no more than its socket's buffer, and one that falls behind further than
compaction gets 410 Gone, as in Kubernetes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from switchboard.api.kinds import Obj, ResourceKind
from switchboard.apiserver import codec, reads, registry, status
from switchboard.store import errors as store_errors
from switchboard.store.protocol import Event, Watch

# Writes one event line (at its revision); False: the watcher has fallen behind, stop after this.
Sink = Callable[[bytes, int], bool]


class _Encodings:
    """What one event became, for one kind: shared by every watcher the event reaches."""

    __slots__ = ("_data", "_lines", "_object", "_previous", "_registry", "event", "kind")

    def __init__(self, reg: registry.Registry, kind: ResourceKind, event: Event) -> None:
        self.event = event
        self.kind = kind
        self._registry = reg
        self._object: Obj | None = None
        self._previous: Obj | None = None
        self._data: bytes | None = None
        self._lines: dict[str, bytes] = {}

    def object(self) -> Obj:
        """The object as the event shows it; shared, so read it and do not change it."""
        if self._object is None:
            self._object = self._registry.decoded(self.kind, self.event.kv, self.event.revision)
        return self._object

    def previous(self) -> Obj:
        assert self.event.prev is not None
        if self._previous is None:
            self._previous = self._registry.decoded(self.kind, self.event.prev)
        return self._previous

    def line(self, type_: str) -> bytes:
        line = self._lines.get(type_)
        if line is None:
            if self._data is None:
                data = self._registry.stored_bytes(self.kind, self.event.kv, self.event.revision)
                # Otherwise the object is decoded once, for selector watchers and the line alike.
                self._data = codec.dumps(self.object()) if data is None else data
            line = self._lines[type_] = b'{"type":"%s","object":%s}\n' % (
                type_.encode(),
                self._data,
            )
        return line


class _Cache:
    """The encodings of the event in hand, one per kind that watches it.

    The store gives an event to every watch before it gives the next, so only
    the event in hand is kept. Two kinds can share a prefix (v1 and
    events.k8s.io/v1 Events), and their watchers come in any order, so the
    entry holds one encoding per kind rather than one in all.
    """

    def __init__(self) -> None:
        self._event: Event | None = None
        self._entries: list[_Encodings] = []  # one or two: kinds are not hashable
        # The line for watchers without a selector or a name, the most common by far:
        # the same for all of a kind, and kept apart so that `Feed._tell` finds it with
        # two identity checks, without a call or a walk of the entries.
        self.told_event: Event | None = None
        self.told_kind: ResourceKind | None = None
        self.told_line = b""

    def tell(self, reg: registry.Registry, kind: ResourceKind, event: Event) -> bytes:
        """Make `told_line` for the event and kind."""
        line = self.of(reg, kind, event).line(_type_of(event))
        self.told_event, self.told_kind, self.told_line = event, kind, line
        return line

    def of(self, reg: registry.Registry, kind: ResourceKind, event: Event) -> _Encodings:
        if self._event is not event:
            self._event = event
            self._entries = []
        for entry in self._entries:
            if entry.kind is kind:
                return entry
        entry = _Encodings(reg, kind, event)
        self._entries.append(entry)
        return entry


_CACHE = _Cache()  # one per process: entries are keyed by Event objects, which no two stores share


class Feed:
    """One watcher's view of a kind's changes after a revision. Open with `Feed.open`."""

    __slots__ = (
        "_events",
        "_filtering",
        "_kind",
        "_name",
        "_opts",
        "_prefix",
        "_registry",
        "_sink",
        "_watch",
        "ended",
        "revision",
    )

    def __init__(
        self,
        reg: registry.Registry,
        kind: ResourceKind,
        namespace: str | None,
        opts: reads.ListOptions,
        name: str | None,
        after: int,
    ) -> None:
        self._registry = reg
        self._kind = kind
        self._prefix = kind.prefix(namespace)
        self._opts = opts
        self._name = name
        self._filtering = opts.label_selector is not None or opts.field_selector is not None
        # The newest store revision this watcher has been told about or has had filtered out.
        self.revision = after
        self._watch: Watch | None = None
        self._events: AsyncIterator[Event] | None = None
        self._sink: Sink | None = None
        self.ended = False  # the store closed the watch while the feed was listening

    @classmethod
    async def open(
        cls,
        reg: registry.Registry,
        kind: ResourceKind,
        namespace: str | None,
        opts: reads.ListOptions,
        *,
        name: str | None = None,
    ) -> tuple[Feed, list[Obj] | None]:
        """The feed, and the current objects when the watch starts with them.

        Those are the watch's synthetic ADDED events; the feed then follows
        changes after them. As Kubernetes: a watch from no resourceVersion (or
        "0") starts with them unless sendInitialEvents=false, which starts from
        now with nothing before; sendInitialEvents=true starts with them from
        any resourceVersion, once the store has reached it (a watch list).
        Raises 400 for a malformed resourceVersion and 410 for a compacted one.
        """
        rv = opts.resource_version
        send = opts.send_initial_events
        initial: list[Obj] | None = None
        if send or (send is None and rv in ("", "0")):
            if rv not in ("", "0"):
                await reg.wait_for(_revision(rv))
            listed = await reg.list(
                kind, namespace, reads.ListOptions(opts.label_selector, opts.field_selector)
            )
            initial = [
                item
                for item in listed["items"]
                if name is None or item["metadata"].get("name") == name
            ]
            after = int(listed["metadata"]["resourceVersion"])
        elif rv in ("", "0"):  # sendInitialEvents=false: the changes from now on
            after = await reg.store.current_revision()
        else:
            after = _revision(rv)
        feed = cls(reg, kind, namespace, opts, name, after)
        feed._start()
        return feed, initial

    def _start(self) -> None:
        try:
            self._watch = self._registry.store.watch(self._prefix, self.revision)
        except store_errors.Compacted as exc:
            raise _too_old(self.revision, exc) from exc
        self._events = aiter(self._watch)
        self._sink = None

    async def next(self) -> tuple[str, Event] | None:
        """The next event's type for this watcher, or None if it is not to be told of it.

        Raises StopAsyncIteration when the store closed the watch, 410 Gone
        when the history it needs was compacted.
        """
        assert self._events is not None
        try:
            event = await anext(self._events)
        except store_errors.Compacted as exc:
            raise _too_old(self.revision, exc) from exc
        self.revision = event.revision
        type_ = self._type_for(_CACHE.of(self._registry, self._kind, event))
        return None if type_ is None else (type_, event)

    def line(self, type_: str, event: Event) -> bytes:
        """The JSON event line, `{"type":...,"object":...}` and a newline."""
        return _CACHE.of(self._registry, self._kind, event).line(type_)

    def object(self, event: Event) -> Obj:
        """The event's object, decoded afresh: the caller may change it."""
        return self._registry.decoded(self._kind, event.kv, event.revision)

    def listen(self, sink: Sink, wake: Callable[[], None]) -> bool:
        """Give every later line to `sink`, from the store's dispatch; False if not caught up yet.

        Lines the watcher is not to be told of are skipped. Once `sink`
        returns False the feed hands on nothing more until `resume`. If the
        store closes the watch meanwhile, `ended` turns True and `wake` is called.
        """
        watch = self._watch
        assert watch is not None
        self._sink = sink

        def closed() -> None:
            if self._watch is watch:  # the store closed it, not `close` or `resume`
                self.ended = True
                wake()

        # Without a selector or a name, every event is told, as the same line to every
        # such watcher of the kind. That is known now, so it is decided here once, not
        # per event in the listener, which runs for every watcher.
        plain = not self._filtering and self._name is None
        if watch.listen(self._tell if plain else self._hand_on, closed):
            return True
        self._sink = None
        return False

    def _hand_on(self, event: Event) -> None:
        if self._sink is None:  # fallen behind: the log keeps this event for `resume`
            return
        encodings = _CACHE.of(self._registry, self._kind, event)
        type_ = self._type_for(encodings)
        # Told or filtered out, this watcher is done with the event either way.
        self.revision = event.revision
        if type_ is not None and not self._sink(encodings.line(type_), event.revision):
            self._sink = None

    def _tell(self, event: Event) -> None:
        """`_hand_on` for a watcher without a selector or a name: told of every event."""
        sink = self._sink
        if sink is None:  # fallen behind: the log keeps this event for `resume`
            return
        self.revision = revision = event.revision
        cache = _CACHE
        if cache.told_event is event and cache.told_kind is self._kind:
            line = cache.told_line
        else:
            line = cache.tell(self._registry, self._kind, event)
        if not sink(line, revision):
            self._sink = None

    async def resume(self) -> None:
        """After `sink` said stop: reopen from the last revision handed out, to catch up again."""
        await self.close()
        self._start()

    async def close(self) -> None:
        self._sink = None
        watch, self._watch = self._watch, None
        if watch is not None:
            await watch.close()

    def _type_for(self, encodings: _Encodings) -> str | None:
        event = encodings.event
        # Names hold no "/", so a key's last segment is its object's name.
        if self._name is not None and event.kv.key.rpartition("/")[2] != self._name:
            return None
        if not self._filtering:
            return _type_of(event)
        kind, opts = self._kind, self._opts
        now = reads.matches(kind, encodings.object(), opts)
        if event.type == "DELETE":
            return "DELETED" if now else None
        before = event.prev is not None and reads.matches(kind, encodings.previous(), opts)
        if now:
            return "MODIFIED" if before else "ADDED"
        return "DELETED" if before else None


def _type_of(event: Event) -> str:
    """The watch event type for a watcher without a selector."""
    if event.type == "DELETE":
        return "DELETED"
    return "ADDED" if event.prev is None else "MODIFIED"


def _revision(rv: str) -> int:
    try:
        return int(rv)
    except ValueError as exc:
        raise status.bad_request(f'invalid resource version "{rv}"') from exc


def _too_old(rv: int, exc: store_errors.Compacted) -> status.APIError:
    return status.gone(f"too old resource version: {rv} ({exc.compacted + 1})")


def encode_event(type_: str, obj: Mapping[str, Any]) -> bytes:
    """A JSON event line for an object at hand (initial events, bookmarks, errors)."""
    return codec.dumps({"type": type_, "object": obj}) + b"\n"
