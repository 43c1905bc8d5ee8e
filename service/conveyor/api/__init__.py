"""The HTTP service: JSON API, OpenAPI, keys and roles, health and metrics."""
