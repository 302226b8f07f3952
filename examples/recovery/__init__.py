"""The connection state recovery contract (issue 12): ``server.py``."""
