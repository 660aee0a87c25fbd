"""Kubeconfig files: which server to reach and how to prove who we are.

A kubeconfig names clusters, users and contexts; a context pairs one cluster
with one user, and `current-context` picks the context used unless the caller
names another. `load` resolves that into one immutable `ClusterConfig`, the
way client-go does:

- relative file paths (`certificate-authority`, `client-certificate`,
  `client-key`, `tokenFile`) are relative to the kubeconfig's own directory;
- `*-data` fields are base64 and win over the matching file field;
- `token` wins over `tokenFile`; a token file is re-read now and then
  (`TOKEN_FILE_TTL`), because projected service-account tokens rotate.

`ssl_context` turns the TLS half into an `ssl.SSLContext` for aiohttp, or
None for plain http. Exec plugins, auth-provider plugins and proxies are not
supported: a kubeconfig that needs one fails loudly instead of connecting
without credentials.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

TOKEN_FILE_TTL = 60.0  # client-go re-reads a token file about once a minute


class KubeconfigError(ValueError):
    """The kubeconfig is missing, malformed, or asks for something unsupported."""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Where the API server is and the credentials to present to it."""

    server: str
    insecure_skip_tls_verify: bool = False
    tls_server_name: str = ""
    ca_data: bytes = b""  # PEM
    ca_file: str = ""
    client_cert_data: bytes = b""  # PEM
    client_cert_file: str = ""
    client_key_data: bytes = b""  # PEM
    client_key_file: str = ""
    token: str = ""
    token_file: str = ""
    _token_cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_https(self) -> bool:
        return urlsplit(self.server).scheme == "https"

    def bearer_token(self) -> str:
        """The token to send, re-reading `token_file` when the cached copy is stale."""
        if self.token:
            return self.token
        if not self.token_file:
            return ""
        now = time.monotonic()
        cached = self._token_cache
        if not cached or now - cached["at"] > TOKEN_FILE_TTL:
            try:
                value = Path(self.token_file).read_text().strip()
            except OSError as exc:
                if cached:  # keep using the last good token through a rotation hiccup
                    return str(cached["token"])
                raise KubeconfigError(f"cannot read tokenFile {self.token_file}: {exc}") from exc
            cached["token"], cached["at"] = value, now
        return str(cached["token"])


def load(path: str | Path, *, context: str | None = None) -> ClusterConfig:
    """Parse the kubeconfig at `path`, using `context` or its current-context."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"kubeconfig {path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {path} is not a mapping")
    return from_dict(doc, base_dir=path.parent, context=context)


def from_dict(doc: dict[str, Any], *, base_dir: Path, context: str | None = None) -> ClusterConfig:
    """Resolve an already-parsed kubeconfig; relative paths are taken from `base_dir`."""
    ctx_name = context or doc.get("current-context") or ""
    if not ctx_name:
        raise KubeconfigError("kubeconfig has no current-context; name a context")
    ctx = _named(doc, "contexts", ctx_name, "context")
    cluster = _named(doc, "clusters", str(ctx.get("cluster", "")), "cluster")
    user = _named(doc, "users", str(ctx["user"]), "user") if ctx.get("user") else {}
    server = str(cluster.get("server", "")).rstrip("/")
    if urlsplit(server).scheme not in ("http", "https"):
        raise KubeconfigError(f"cluster server {server!r} is not an http:// or https:// URL")
    for unsupported in ("exec", "auth-provider"):
        if user.get(unsupported):
            raise KubeconfigError(f"kubeconfig user uses {unsupported!r}, which is not supported")
    if user.get("username") or user.get("password"):
        raise KubeconfigError("kubeconfig user uses basic auth, which is not supported")

    def resolve(value: Any) -> str:
        if not value:
            return ""
        p = Path(str(value)).expanduser()
        return str(p if p.is_absolute() else base_dir / p)

    return ClusterConfig(
        server=server,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=str(cluster.get("tls-server-name", "") or ""),
        ca_data=_b64(cluster.get("certificate-authority-data"), "certificate-authority-data"),
        ca_file=resolve(cluster.get("certificate-authority")),
        client_cert_data=_b64(user.get("client-certificate-data"), "client-certificate-data"),
        client_cert_file=resolve(user.get("client-certificate")),
        client_key_data=_b64(user.get("client-key-data"), "client-key-data"),
        client_key_file=resolve(user.get("client-key")),
        token=str(user.get("token", "") or ""),
        token_file=resolve(user.get("tokenFile")),
    )


def ssl_context(config: ClusterConfig) -> ssl.SSLContext | None:
    """The TLS settings for an https server, or None for http."""
    if not config.is_https:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if config.insecure_skip_tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif config.ca_data:
        ctx.load_verify_locations(cadata=config.ca_data.decode())
    elif config.ca_file:
        ctx.load_verify_locations(cafile=config.ca_file)
    cert = config.client_cert_data or _read(config.client_cert_file)
    key = config.client_key_data or _read(config.client_key_file)
    if cert or key:
        if not (cert and key):
            raise KubeconfigError("a client certificate needs both a certificate and a key")
        _load_cert_chain(ctx, cert, key)
    return ctx


def _load_cert_chain(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # The ssl module loads a certificate chain only from files, so inline data is
    # written to a private temporary directory and removed as soon as it is loaded.
    with tempfile.TemporaryDirectory(prefix="switchboard-tls-") as tmp:
        cert_path, key_path = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        for p, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        try:
            ctx.load_cert_chain(cert_path, key_path)
        finally:
            for p in (cert_path, key_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)


def _named(doc: dict[str, Any], section: str, name: str, inner: str) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(inner) or {}
            if not isinstance(value, dict):
                raise KubeconfigError(f"kubeconfig {section} entry {name!r} is malformed")
            return value
    raise KubeconfigError(f"kubeconfig has no {inner} named {name!r}")


def _b64(value: Any, what: str) -> bytes:
    if not value:
        return b""
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KubeconfigError(f"kubeconfig {what} is not valid base64") from exc


def _read(path: str) -> bytes:
    if not path:
        return b""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KubeconfigError(f"cannot read {path}: {exc}") from exc
