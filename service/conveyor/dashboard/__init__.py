"""The dashboard: server-rendered pages (Jinja2, htmx for the live parts) served by the API's
own app at ``/`` (``create_app`` includes :func:`routes`), mountable under a prefix like the
rest of it (links come from ``request.url_for``). Docs: docs/dashboard.md."""

from .routes import routes

__all__ = ["routes"]
