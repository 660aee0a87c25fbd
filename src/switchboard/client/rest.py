"""The async REST client: one aiohttp session, JSON dicts in and out.

INTERFACE (to be implemented): every component except the apiserver talks to
the API through this class, so it works against Switchboard's apiserver and
a real Kubernetes API server alike. Objects are plain dicts; resources are
`api.kinds.ResourceKind` values (`kinds.PODS`, `kinds.SERVICES`, …).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from switchboard.api.kinds import Obj, ResourceKind

PatchType = Literal["merge", "strategic", "json"]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    object: Obj


class Client:
    """Async Kubernetes API client. Raises `client.errors` exceptions."""

    @classmethod
    def from_kubeconfig(cls, path: str | Path, *, context: str | None = None) -> Client:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def get(
        self, kind: ResourceKind, namespace: str | None, name: str, *, subresource: str = ""
    ) -> Obj:
        raise NotImplementedError

    async def list(
        self,
        kind: ResourceKind,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
    ) -> Obj:
        """One page; `list_all` follows `metadata.continue`."""
        raise NotImplementedError

    async def list_all(
        self,
        kind: ResourceKind,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        page_size: int = 500,
    ) -> tuple[list[Obj], str]:
        """Every item across pages, and the list's resourceVersion."""
        raise NotImplementedError

    async def create(
        self,
        kind: ResourceKind,
        namespace: str | None,
        obj: Obj,
        *,
        subresource: str = "",
        name: str = "",
    ) -> Obj:
        """POST; with `subresource` (e.g. "binding") POST to NAME/SUBRESOURCE."""
        raise NotImplementedError

    async def update(self, kind: ResourceKind, obj: Obj, *, subresource: str = "") -> Obj:
        """PUT the object (namespace and name from its metadata)."""
        raise NotImplementedError

    async def patch(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        patch_type: PatchType = "merge",
        subresource: str = "",
    ) -> Obj:
        raise NotImplementedError

    async def delete(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, str] | None = None,
    ) -> Obj:
        raise NotImplementedError

    def watch(
        self,
        kind: ResourceKind,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        allow_bookmarks: bool = True,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[WatchEvent]:
        """Stream events; raises errors.Gone when the resourceVersion is too old."""
        raise NotImplementedError
