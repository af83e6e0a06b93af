"""The web interface: server-rendered pages for browsing the hub (Jinja2, no build step)."""
