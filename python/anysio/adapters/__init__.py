"""Adapters: the seam (``base``: ``Adapter``, ``BroadcastOptions`` and what an adapter sees of its namespace) and
the cluster adapters built on it (``bus``: the workers of one machine)."""
