"""The data plane of one address family on one node: the last applied state, and how to move on.

A sync loop calls this and nothing lower::

    plane = DataPlane(nft.open_backend(netns), ruleset.ProxyConfig(...))
    plane.sync(all_service_ports)      # at start, after informers listed once
    plane.update({name: (info, endpoints), other: None})   # every batch of changes
    plane.sync(all_service_ports)      # periodic full resync

`sync` replaces the table atomically (stale rules of an earlier run are
reconciled in the same transaction), handing nft the table in pieces as it
is built where the backend can take them (`ruleset.FullSync`); `update`
derives the next state from the one in memory and applies only the diff.
The kernel's table is never listed to find out what to change.

If a transaction fails, the kernel keeps the previous table whole (nft
transactions are atomic), but this process can no longer be sure what is
there, so `update` falls back at once to a full sync of the desired state;
if that fails too, the error is raised and the next call syncs in full.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from switchboard.proxy import model, nft, ruleset

log = logging.getLogger(__name__)


class DataPlane:
    """One table (one family) in one network namespace, driven by desired state."""

    def __init__(self, backend: nft.Backend, config: ruleset.ProxyConfig) -> None:
        self.backend = backend
        self.config = config
        self._applied: ruleset.ProxyState | None = None

    @property
    def state(self) -> ruleset.ProxyState | None:
        """The state the kernel holds, or None before the first sync or after a failure."""
        return self._applied

    def sync(self, services: Mapping[model.ServicePortName, ruleset.Desired]) -> ruleset.ProxyState:
        """Make the table serve exactly `services`, replacing it in one transaction."""
        pieces = ruleset.FullSync(self.config, services)
        try:
            if isinstance(self.backend, nft.StreamingBackend):
                # nft reads the start of the table while the rest is still being built.
                self.backend.apply_stream(pieces)
            else:
                self.backend.apply("".join(pieces))
        except nft.NftError:
            self._applied = None
            raise
        # Any other failure (input the state refuses) came before nft committed anything.
        self._applied = pieces.state
        return pieces.state

    def update(
        self, changes: Mapping[model.ServicePortName, ruleset.Desired | None]
    ) -> ruleset.ProxyState:
        """Apply `changes` (name → (info, endpoints), or None to remove) incrementally."""
        if self._applied is None:
            raise RuntimeError("update() needs a sync() first: there is no applied state")
        current = self._applied
        desired = current.update(changes)
        script = ruleset.diff(current, desired)
        if not script:
            self._applied = desired
            return desired
        try:
            self.backend.apply(str(script))
        except nft.NftError as exc:
            log.warning("incremental sync failed, syncing in full: %s", exc)
            self._apply_full(desired)
        else:
            self._applied = desired
        return desired

    def _apply_full(self, desired: ruleset.ProxyState) -> None:
        self._applied = None
        self.backend.apply(str(ruleset.full(desired)))
        self._applied = desired
