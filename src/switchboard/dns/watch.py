"""Feeding the zone from the API: informers on Services and EndpointSlices.

Each informer event goes straight into `records.Zone`, which recomputes the
records of the one Service concerned; there is no queue and no sync loop,
because a Service's records are small and the zone is only ever touched
from the event loop, so an answer follows a change as soon as its watch
event arrives. After a 410 the informers relist and deliver the difference
as ordinary events, and the zone converges the same way.

Pods need no informer: pod records are computed from the queried name.

The zone is marked synced only after both informers have listed once; until
then the server answers in-zone questions with SERVFAIL rather than a
NXDOMAIN that clients would cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from switchboard.api import kinds
from switchboard.api.kinds import Obj
from switchboard.client import informer, rest
from switchboard.dns import records

log = logging.getLogger(__name__)


class ZoneFeeder:
    """Keeps one `records.Zone` equal to the API's Services and EndpointSlices."""

    def __init__(
        self,
        client: rest.Client,
        zone: records.Zone,
        on_synced: Callable[[], None] | None = None,
    ) -> None:
        self.zone = zone
        self._on_synced = on_synced
        self.services = informer.Informer(client, kinds.SERVICES)
        self.slices = informer.Informer(client, kinds.ENDPOINTSLICES)
        self.services.add_handlers(
            on_add=self._set_service,
            on_update=lambda _old, new: self._set_service(new),
            on_delete=self._delete_service,
        )
        self.slices.add_handlers(
            on_add=self._set_slice,
            on_update=lambda _old, new: self._set_slice(new),
            on_delete=self._delete_slice,
        )

    async def run(self) -> None:
        """List and watch for ever (until cancelled); marks the zone synced on the way."""
        tasks = [asyncio.create_task(i.run()) for i in (self.services, self.slices)]
        try:
            await informer.wait_for_sync(self.services, self.slices)
            self.zone.mark_synced()
            log.info(
                "dns: synced %d services and %d endpoint slices",
                len(self.services),
                len(self.slices),
            )
            if self._on_synced is not None:
                self._on_synced()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _set_service(self, obj: Obj) -> None:
        self.zone.set_service(obj)

    def _delete_service(self, obj: Obj) -> None:
        namespace, name = _namespace_name(obj)
        self.zone.delete_service(namespace, name)

    def _set_slice(self, obj: Obj) -> None:
        self.zone.set_slice(obj)

    def _delete_slice(self, obj: Obj) -> None:
        namespace, name = _namespace_name(obj)
        self.zone.delete_slice(namespace, name)


def _namespace_name(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")
