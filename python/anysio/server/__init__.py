"""The Socket.IO server: ``Server`` and ``Namespace`` (``server``), ``BroadcastOperator`` (``broadcast``),
``Socket``/``Ack``/``Handshake`` (``socket``), handlers (``handler``) and the dispatcher that turns the core's
events into handler calls (``dispatcher``)."""
