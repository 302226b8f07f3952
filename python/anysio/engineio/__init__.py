"""Engine.IO: the public ``EngineServer`` (``server``) and the runtime every server shares (``runtime``: the core,
its driver loop, the handshake decision; ``http``: the request and static files)."""
