"""The benchmark contract on anysio's ASGI app (``anysio.ASGIApp``) under uvicorn with uvloop.

Same handlers as anysio_server.py. Exits with status 3 when this anysio has no ASGIApp.
Usage: PORT=5000 python bench/servers/anysio_asgi_server.py
"""

from __future__ import annotations

import os
import sys

import anysio

NOT_AVAILABLE = 3


def main() -> None:
    asgi_app = getattr(anysio, "ASGIApp", None)
    if asgi_app is None:
        print("anysio.ASGIApp is not available in this build", file=sys.stderr)
        sys.exit(NOT_AVAILABLE)
    import uvicorn
    from anysio_server import make_server

    app = asgi_app(make_server())
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), loop="uvloop", log_level="warning")


if __name__ == "__main__":
    main()
