"""The HTTP server: app.py wires services and routes, handlers.py answers, replies.py formats."""
