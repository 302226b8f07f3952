"""Engine.IO echo server with exactly the configuration of the protocol test suite.

Every message is sent back as it came, text or binary: pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1e6,
CORS for any origin, path /engine.io/. Usage: python examples/conformance/engineio_server.py [--port 3000]
"""

from __future__ import annotations

import argparse
import logging

from anysio import EngineServer, Session


def make_server() -> EngineServer:
    eio = EngineServer(
        ping_interval=0.3, ping_timeout=0.2, max_payload=1_000_000, cors_allowed_origins="*", path="/engine.io/"
    )

    @eio.on_message
    def echo(session: Session, data: str | bytes) -> None:
        session.send(data)

    return eio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    make_server().run(args.host, args.port, backend=args.backend)


if __name__ == "__main__":
    main()
