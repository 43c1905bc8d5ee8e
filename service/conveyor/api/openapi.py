"""The OpenAPI 3.1 document of the API, made from the route table.

Contract: every operation, parameter, body and response in the document comes from the
:class:`~conveyor.api.routing.Endpoint` declarations and their pydantic models (JSON Schema
2020-12, which OpenAPI 3.1 uses as it is): request models in pydantic's validation mode,
responses in its serialization mode. Each operation lists the problem documents it may
answer with, and a ``default`` problem for anything else, so a client (or schemathesis)
checking responses against the document finds every status described. ``x-conveyor-role``
names the role an operation needs. The document is built once per app and served as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .problems import KINDS, TYPE_PREFIX
from .routing import Endpoint, FileOut, Group

REF = "#/components/schemas/{model}"
VERSION = "0.1.0"

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted: not finished yet",
    204: "No content",
    400: "Bad request: malformed JSON, or a request Conveyor refused",
    401: "No API key, or a malformed, unknown or revoked one",
    403: "The key's role does not allow this",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body too large",
    415: "The body is not JSON",
    422: "Invalid parameters or body",
    429: "Too many failed authentication attempts from this client",
    500: "Failed on the server",
    503: "The database cannot be reached",
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": f"{TYPE_PREFIX}<slug>: see docs/api.md"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["location", "field", "detail"],
                "properties": {
                    "location": {"type": "string", "enum": ["path", "query", "body"]},
                    "field": {"type": "string"},
                    "detail": {"type": "string"},
                },
            },
        },
        "error_id": {"type": "string"},
        "job_id": {"type": "integer"},
        "error": {"type": ["object", "null"]},
    },
}


def document(groups: Sequence[Group], *, prefix: str, server: str = "/") -> dict[str, Any]:
    """The OpenAPI document; ``prefix`` is the API's root path in the app (``/api/v1``),
    ``server`` where the app is reached (its mount point: root_path, or ``/``)."""
    endpoints = [endpoint for group in groups for endpoint in group.endpoints]
    refs, schemas = _schemas(endpoints)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(prefix + endpoint.path, {})[endpoint.method.lower()] = _operation(
            endpoint, refs, schemas
        )
    schemas["Problem"] = PROBLEM_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Conveyor API",
            "version": VERSION,
            "description": (
                "Background jobs and schedules on PostgreSQL. Every request needs an API key "
                "(`Authorization: Bearer cvk_...`); every failure is an RFC 9457 problem document. "
                "Problem types: " + ", ".join(f"`{kind.slug}` ({kind.status})" for kind in KINDS) + "."
            ),
        },
        "servers": [{"url": server or "/"}],
        "tags": [{"name": group.tag, "description": group.description} for group in groups],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key made with `conveyor keys create`.",
                }
            },
        },
    }


Key = tuple[type[BaseModel], JsonSchemaMode]


def _schemas(endpoints: Sequence[Endpoint]) -> tuple[dict[Key, dict[str, Any]], dict[str, Any]]:
    keys: dict[Key, None] = {}
    for endpoint in endpoints:
        if endpoint.body_model is not None:
            keys[(endpoint.body_model, "validation")] = None
        for _, model in endpoint.responses:
            if model is not None and not issubclass(model, FileOut):
                keys[(model, "serialization")] = None
    refs, top = models_json_schema(list(keys), ref_template=REF)
    return {(model, mode): ref for (model, mode), ref in refs.items() if issubclass(model, BaseModel)}, dict(
        top.get("$defs", {})
    )


def _operation(
    endpoint: Endpoint, refs: dict[Key, dict[str, Any]], schemas: dict[str, Any]
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.name,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    if endpoint.role is not None:
        operation["security"] = [{"apiKey": []}]
        operation["x-conveyor-role"] = endpoint.role.label
    parameters = [
        *_parameters(endpoint.path_model, "path", schemas),
        *_parameters(endpoint.query_model, "query", schemas),
    ]
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body_model is not None:
        operation["requestBody"] = {
            "required": not endpoint.body_optional,
            "content": {"application/json": {"schema": refs[(endpoint.body_model, "validation")]}},
        }
    responses: dict[str, Any] = {}
    for status, model in endpoint.responses:
        if model is None:
            responses[str(status)] = {"description": _STATUS_TEXT.get(status, "")}
        elif issubclass(model, FileOut):
            responses[str(status)] = {
                "description": (model.__doc__ or _STATUS_TEXT.get(status, "")).strip().split("\n")[0],
                "content": {
                    media: {"schema": {"type": "string", "contentMediaType": media}}
                    for media in model.media_types
                },
            }
        else:
            responses[str(status)] = {
                "description": (model.__doc__ or _STATUS_TEXT.get(status, "")).strip().split("\n")[0],
                "content": {"application/json": {"schema": refs[(model, "serialization")]}},
            }
    for status in sorted(_problem_statuses(endpoint)):
        responses[str(status)] = _problem(status)
    responses["default"] = _problem(None)
    operation["responses"] = responses
    return operation


def _problem(status: int | None) -> dict[str, Any]:
    return {
        "description": _STATUS_TEXT.get(status, "A problem") if status else "A problem",
        "content": {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}},
    }


def _problem_statuses(endpoint: Endpoint) -> set[int]:
    statuses = {500, 503, *endpoint.problems}
    if endpoint.role is not None:
        statuses |= {401, 403, 429}
    if endpoint.path_model is not None:
        statuses |= {404, 422}
    if endpoint.query_model is not None:
        statuses.add(422)
    if endpoint.body_model is not None:
        statuses |= {400, 413, 415, 422}
    return statuses


def _parameters(
    model: type[BaseModel] | None, location: Literal["path", "query"], schemas: dict[str, Any]
) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=REF, mode="validation")
    schemas.update(schema.get("$defs", {}))
    required = set(schema.get("required", []))
    found = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": location,
            "required": location == "path" or name in required,
            "schema": prop,
        }
        if description:
            parameter["description"] = description
        found.append(parameter)
    return found
