"""Reading a request's inputs: path and query parameters, and a JSON body within a size limit.

Contract:

- The body is read chunk by chunk and refused (413) as soon as it passes ``limit`` bytes,
  or before reading anything when its Content-Length says it would; it is never held whole
  past the limit.
- A non-empty body must be JSON (``application/json`` or ``application/<x>+json``): 415
  otherwise. It must parse as strict JSON (no NaN or Infinity, valid UTF-8): 400 otherwise.
  An endpoint whose body is optional takes an empty body as ``{}``.
- No string may hold a NUL character (PostgreSQL's text and jsonb cannot): 422, naming
  the parameter or the body's field.
- Bodies are validated in pydantic's strict mode (a number is not a string, ``true`` is not
  1); path and query parameters, which are text, in its lax mode. Unknown fields are
  refused by the models (``extra="forbid"``). Every failure lists its fields (422).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from ..settings import API_BODY_LIMIT
from .problems import (
    BODY_TOO_LARGE,
    MALFORMED_JSON,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION,
    FieldError,
    Problem,
)

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency on CPython
    orjson = None  # type: ignore[assignment]

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH = 200  # levels of nesting pydantic's JSON parser reads (its recursion limit)
DEFAULT_BODY_LIMIT = API_BODY_LIMIT  # bytes: one job at its 1 MiB argument limit, with room


async def read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes (Problem 413 past that, found while streaming)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> Problem:
    return Problem(BODY_TOO_LARGE, f"the request body is larger than the limit of {limit} bytes")


def is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def parse_json(raw: bytes) -> Any:
    """Strict JSON: NaN, Infinity and invalid UTF-8 are malformed (Problem 400); nesting past
    MAX_DEPTH levels is refused as too deep (422)."""
    try:
        return _loads(raw)
    except RecursionError:  # the standard library's parser, past Python's recursion limit
        raise _too_deep() from None
    except ValueError as exc:  # orjson's JSONDecodeError and UnicodeDecodeError are ValueErrors
        if "depth limit" in str(exc):  # orjson's own limit (1024)
            raise _too_deep() from None
        raise Problem(MALFORMED_JSON, f"the request body is not valid JSON: {exc}") from None


def _too_deep() -> Problem:
    return Problem(
        VALIDATION,
        f"the body is nested more deeply than the {MAX_DEPTH} levels the API reads",
        [FieldError("body", "", "nested too deeply")],
    )


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _json_loads(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)


_loads: Callable[[bytes], Any] = orjson.loads if orjson is not None else _json_loads


def body_model(model: type[M], raw: bytes, content_type: str | None, *, optional: bool) -> M:
    """The body as ``model``: 415 unless JSON, 400 unless well-formed, 422 unless valid."""
    if not raw.strip():
        if optional:
            return model.model_validate({})
        raise Problem(VALIDATION, "a JSON body is required", [FieldError("body", "", "required")])
    if not is_json(content_type):
        raise Problem(
            UNSUPPORTED_MEDIA_TYPE,
            f"send the body as application/json (got {content_type or 'no Content-Type'})",
        )
    parsed = parse_json(raw)
    try:
        body = model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            # Well-formed (parsed above), so what pydantic's parser refused is the depth.
            raise _too_deep() from None
        raise invalid("body", exc) from None
    # The escape of NUL, which no PostgreSQL text or jsonb can hold. (Walked after pydantic
    # read the body, so its nesting is bounded.)
    if b"\\u0000" in raw:
        where = _nul_in(parsed, "")
        if where is not None:
            raise Problem(VALIDATION, "the body holds a NUL character", [FieldError("body", where, _NUL)])
    return body


def params_model(model: type[M], location: str, values: Mapping[str, str]) -> M:
    """Path or query parameters as ``model`` (lax: they are text); 422 unless valid."""
    nul = [FieldError(location, name, _NUL) for name, value in values.items() if "\x00" in name + value]
    if nul:
        raise Problem(VALIDATION, f"a {location} parameter holds a NUL character", nul)
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise invalid(location, exc) from None


_NUL = "must not contain NUL characters (\\u0000)"


def _nul_in(value: object, pointer: str) -> str | None:
    """The JSON pointer of the first string (or key) holding NUL in a parsed body, if any."""
    if isinstance(value, str):
        return pointer if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            here = pointer + "/" + name.replace("~", "~0").replace("/", "~1")
            if "\x00" in name:
                return here
            found = _nul_in(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_in(item, f"{pointer}/{index}")
            if found is not None:
                return found
    return None


def invalid(location: str, exc: ValidationError) -> Problem:
    errors = [FieldError(location, _field(location, error["loc"]), _message(error)) for error in exc.errors()]
    fields = ", ".join(sorted({e.field or location for e in errors}))
    return Problem(VALIDATION, f"invalid {location}: {fields}", errors)


def _field(location: str, loc: tuple[int | str, ...]) -> str:
    if location == "body":
        # A JSON pointer (RFC 6901) into the body; pydantic adds the name of a union's member
        # or a function validator to the path, which is not part of the document.
        parts = [str(part).replace("~", "~0").replace("/", "~1") for part in loc if not _internal(part)]
        return "/" + "/".join(parts) if parts else ""
    return ".".join(str(part) for part in loc if not _internal(part))


def _internal(part: int | str) -> bool:
    return isinstance(part, str) and (
        part.startswith("function-") or part in {"str", "int", "float", "bool", "list", "dict"} or "[" in part
    )


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    return str(error.get("msg", "invalid"))
