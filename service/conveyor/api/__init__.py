"""The HTTP service: JSON API, OpenAPI, keys and roles, health and metrics.

``create_app`` makes the Starlette application (docs/api.md)."""

from .app import create_app

__all__ = ["create_app"]
