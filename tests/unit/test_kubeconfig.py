"""Kubeconfig handling: contexts, credentials, and TLS against a local https server.

The TLS tests run a small aiohttp https server on loopback that requires a
client certificate and echoes back who connected, with certificates made by
the `openssl` command for this module only.
"""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from switchboard.api import kinds
from switchboard.client import errors, kubeconfig, rest

OPENSSL = shutil.which("openssl")


@dataclass(frozen=True)
class Certs:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def _signed(cwd: Path, name: str, cn: str, ext: str) -> None:
    (cwd / f"{name}.ext").write_text(ext)
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
        cwd=cwd,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext",
        cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test-ca",
        cwd=d,
    )  # fmt: skip
    _signed(d, "server", "apiserver", "subjectAltName=IP:127.0.0.1\n")
    _signed(d, "client", "controller", "extendedKeyUsage=clientAuth\n")
    return Certs(
        d, d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key"
    )


@dataclass
class Echo:
    url: str
    seen: list[dict[str, Any]]


@pytest.fixture
async def https_server(certs: Certs) -> AsyncIterator[Echo]:
    """An https server that requires a client certificate and echoes who called."""
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(x[0] for x in (peer or {}).get("subject", ()))
        seen.append({"cn": subject.get("commonName"), "auth": request.headers.get("Authorization")})
        return web.json_response({"kind": "Service", "metadata": {"name": "echo"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.server_cert, certs.server_key)
    ctx.load_verify_locations(certs.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Echo(f"https://127.0.0.1:{port}", seen)
    finally:
        await runner.cleanup()


def write_kubeconfig(
    path: Path, cluster: dict[str, Any], user: dict[str, Any], **extra: Any
) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    doc.update(extra)
    path.write_text(yaml.safe_dump(doc))
    return path


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


# ---- parsing -------------------------------------------------------------------------------


def test_the_current_context_picks_the_server_and_token(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", {"server": "http://127.0.0.1:8080/"}, {"token": "t"})
    config = kubeconfig.load(path)
    assert config.server == "http://127.0.0.1:8080"
    assert config.bearer_token() == "t"
    assert not config.is_https


def test_a_named_context_overrides_the_current_one(tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "kc",
        {"server": "http://127.0.0.1:1"},
        {},
        clusters=[
            {"name": "c", "cluster": {"server": "http://127.0.0.1:1"}},
            {"name": "other", "cluster": {"server": "http://127.0.0.1:2"}},
        ],
        contexts=[
            {"name": "ctx", "context": {"cluster": "c", "user": "u"}},
            {"name": "second", "context": {"cluster": "other", "user": "u"}},
        ],
    )
    assert kubeconfig.load(path, context="second").server == "http://127.0.0.1:2"


def test_relative_file_paths_are_taken_from_the_kubeconfig_directory(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("from-file\n")
    path = write_kubeconfig(
        tmp_path / "kc",
        {"server": "https://127.0.0.1:1", "certificate-authority": "secrets/ca.crt"},
        {"tokenFile": "secrets/token"},
    )
    config = kubeconfig.load(path)
    assert config.ca_file == str(tmp_path / "secrets" / "ca.crt")
    assert config.bearer_token() == "from-file"


def test_an_unknown_context_is_reported_by_name(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", {"server": "http://127.0.0.1:1"}, {})
    with pytest.raises(kubeconfig.KubeconfigError, match="'nope'"):
        kubeconfig.load(path, context="nope")


def test_an_exec_plugin_user_is_refused_rather_than_sent_without_credentials(
    tmp_path: Path,
) -> None:
    path = write_kubeconfig(
        tmp_path / "kc", {"server": "https://127.0.0.1:1"}, {"exec": {"command": "x"}}
    )
    with pytest.raises(kubeconfig.KubeconfigError, match="exec"):
        kubeconfig.load(path)


def test_a_server_that_is_not_an_http_url_is_refused(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", {"server": "127.0.0.1:6443"}, {})
    with pytest.raises(kubeconfig.KubeconfigError, match="http"):
        kubeconfig.load(path)


# ---- TLS -----------------------------------------------------------------------------------


async def test_inline_ca_and_client_certificate_data_authenticate_over_https(
    tmp_path: Path, certs: Certs, https_server: Echo
) -> None:
    path = write_kubeconfig(
        tmp_path / "kc",
        {"server": https_server.url, "certificate-authority-data": b64(certs.ca)},
        {
            "client-certificate-data": b64(certs.client_cert),
            "client-key-data": b64(certs.client_key),
            "token": "secret",
        },
    )
    async with rest.Client.from_kubeconfig(path) as client:
        got = await client.get(kinds.SERVICES, "default", "echo")
    assert got["metadata"]["name"] == "echo"
    assert https_server.seen == [{"cn": "controller", "auth": "Bearer secret"}]


async def test_certificate_files_and_a_token_file_authenticate_over_https(
    tmp_path: Path, certs: Certs, https_server: Echo
) -> None:
    (tmp_path / "token").write_text("file-token\n")
    path = write_kubeconfig(
        tmp_path / "kc",
        {"server": https_server.url, "certificate-authority": str(certs.ca)},
        {
            "client-certificate": str(certs.client_cert),
            "client-key": str(certs.client_key),
            "tokenFile": "token",
        },
    )
    async with rest.Client.from_kubeconfig(path) as client:
        await client.get(kinds.SERVICES, "default", "echo")
    assert https_server.seen == [{"cn": "controller", "auth": "Bearer file-token"}]


async def test_insecure_skip_tls_verify_connects_without_a_ca(
    tmp_path: Path, certs: Certs, https_server: Echo
) -> None:
    path = write_kubeconfig(
        tmp_path / "kc",
        {"server": https_server.url, "insecure-skip-tls-verify": True},
        {"client-certificate": str(certs.client_cert), "client-key": str(certs.client_key)},
    )
    async with rest.Client.from_kubeconfig(path) as client:
        await client.get(kinds.SERVICES, "default", "echo")
    assert https_server.seen == [{"cn": "controller", "auth": None}]


async def test_a_server_certificate_from_an_unknown_ca_is_a_transport_error(
    tmp_path: Path, certs: Certs, https_server: Echo
) -> None:
    path = write_kubeconfig(
        tmp_path / "kc",
        {"server": https_server.url},
        {"client-certificate": str(certs.client_cert), "client-key": str(certs.client_key)},
    )
    async with rest.Client.from_kubeconfig(path) as client:
        with pytest.raises(errors.TransportError):
            await client.get(kinds.SERVICES, "default", "echo")
    assert https_server.seen == []


def test_a_client_certificate_without_its_key_is_refused(tmp_path: Path, certs: Certs) -> None:
    path = write_kubeconfig(
        tmp_path / "kc",
        {"server": "https://127.0.0.1:1", "certificate-authority": str(certs.ca)},
        {"client-certificate": str(certs.client_cert)},
    )
    with pytest.raises(kubeconfig.KubeconfigError, match="key"):
        rest.Client.from_kubeconfig(path)
