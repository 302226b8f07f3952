"""The server side of the official Socket.IO Admin UI (``@socket.io/admin-ui`` 0.5): ``anysio.instrument``.

``instrument`` (instrument.py) speaks the UI's protocol on an admin namespace; serialize.py writes sockets and
the aggregated events as the UI reads them; ui.py serves the UI's static app (``ui/dist`` of the npm package)."""
