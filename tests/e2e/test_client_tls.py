"""anysio.Client over TLS (https, then wss on the upgrade) to Node's socket.io on an https server, with a
certificate from a test authority (trustme), on asyncio and trio; and the same server refused, with a clear error,
when the client trusts only the system's authorities."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import trustme

import anysio
from tests.e2e.client_helpers import NodePeer, node_peer
from tests.e2e.sio_helpers import WAIT
from tests.e2e.test_client import TRANSPORTS, upgraded

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def key_and_cert(authority: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    cert = authority.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    key_file, cert_file = folder / "key.pem", folder / "cert.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    yield key_file, cert_file


@pytest.fixture
async def tls_node(key_and_cert: tuple[Path, Path]) -> AsyncIterator[NodePeer]:
    key_file, cert_file = key_and_cert
    async with node_peer("--tls", str(key_file), str(cert_file)) as node:
        yield node


def trusting(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


@pytest.mark.parametrize("transports", ["upgrade", "websocket"])
async def test_https_then_wss_with_the_servers_authority(
    tls_node: NodePeer, authority: trustme.CA, transports: str
) -> None:
    url = f"https://127.0.0.1:{tls_node.port}"
    client = anysio.Client(url, transports=TRANSPORTS[transports], reconnection=False, ssl_context=trusting(authority))
    with anyio.fail_after(WAIT):
        async with client:
            await upgraded(client)
            [connection] = await tls_node.expect("connection")
            assert connection["transport"] == TRANSPORTS[transports][0]
            blob = bytes(range(256)) * 64
            assert await client.emit_with_ack("echo", "über", {"b": blob}) == ("über", {"b": blob})
    await tls_node.expect("disconnect", reason="client namespace disconnect")


@pytest.mark.parametrize("transports", ["upgrade", "websocket"])
async def test_a_certificate_the_client_does_not_trust_is_a_clear_error(tls_node: NodePeer, transports: str) -> None:
    client = anysio.Client(f"https://127.0.0.1:{tls_node.port}", transports=TRANSPORTS[transports], reconnection=False)
    with anyio.fail_after(WAIT), pytest.raises(anysio.ConnectionError) as info:
        await client.connect()
    assert "certificate verify failed" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
