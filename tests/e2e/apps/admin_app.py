"""The application the Admin UI's worker test runs in N processes: the worker tests' application ("echo",
"whoami", ...), instrumented for the UI without a login."""

from __future__ import annotations

import anysio
from tests.e2e.apps.workers_app import sio

anysio.instrument(sio, auth=None)

__all__ = ["sio"]
