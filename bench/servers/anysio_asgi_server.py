"""The benchmark contract on anysio's ASGI app (``anysio.ASGIApp``) under uvicorn with uvloop.

Same handlers as anysio_server.py (``--handler``, default typed). Exits with status 3 when this anysio has no
ASGIApp. Usage: PORT=5000 python bench/servers/anysio_asgi_server.py [--handler typed|model|untyped]
"""

from __future__ import annotations

import argparse
import sys

from anysio_server import HANDLERS, make_server
from uvicorn_bare_server import serve

import anysio

NOT_AVAILABLE = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--handler", choices=HANDLERS, default="typed", help="the handlers' form (default typed)")
    args = parser.parse_args()
    asgi_app = getattr(anysio, "ASGIApp", None)
    if asgi_app is None:
        print("anysio.ASGIApp is not available in this build", file=sys.stderr)
        sys.exit(NOT_AVAILABLE)
    serve(asgi_app(make_server(args.handler)))


if __name__ == "__main__":
    main()
