"""HTTP/WebSocket gateway: REST + WebSocket in front of an in-process node (see app.py)."""
