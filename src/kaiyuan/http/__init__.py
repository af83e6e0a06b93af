"""The ASGI edge: HF-compatible routes, and later the native API and the web pages."""
