"""The route table: each endpoint of the JSON API declared once, and how a request is served.

Contract: an endpoint is an async function decorated with ``@group.route(METHOD, PATH,
role=..., summary=...)`` in a :class:`Group`. It takes, by parameter name, ``call`` (a
:class:`Call`: the client and who asks), ``path``, ``query`` and ``body``, each but the first
annotated with a pydantic model; it returns a pydantic model (its return annotation: one
model, a union of models each with its own ``status_code``, or None for 204; a
:class:`FileOut` is a file streamed as it is, not JSON). The same
models validate requests, serialize responses and make the OpenAPI document
(``api.openapi``), so the document cannot drift from what is served. Handlers hold no logic:
they turn the models into a call of a ``conveyor.ops`` operation and its result into a model.

Per request, in this order: authenticate (unless the endpoint is public: ``role=None``);
refuse a caller whose role is below the endpoint's (so it learns nothing from validation,
and sends no body for nothing); parse path, query and body (``api.inputs``); call the
handler; serialize. The role is checked again, and authoritatively, by the ops function the
handler calls: the route table's role is what the document states and an early refusal.
Every refusal and failure is a problem document (``api.problems``).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import types
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ..errors import ConfigurationError, ConveyorError
from ..ops.roles import Principal, Role, require
from ..queue.client import Conveyor
from .auth import Authenticator
from .inputs import body_model, params_model, read_body
from .problems import METHOD_NOT_ALLOWED, VALIDATION, FieldError, Problem, problem_for, render, unexpected

Handler = Callable[..., Awaitable[Any]]


class Input(BaseModel):
    """Base of request bodies: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class Params(BaseModel):
    """Base of path and query parameters: unknown ones are refused."""

    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    """Base of responses. ``status_code``: the HTTP status it is sent with (else the
    endpoint's own)."""

    status_code: ClassVar[int | None] = None


class FileOut(Output):
    """Base of responses that are a file, not JSON: the file at ``path`` is streamed (with
    Content-Length, Range requests and HEAD) as ``media_type``, as an attachment named
    ``filename``. ``stat``: the file's stat, taken when it was checked (its size and time are
    sent from it). ``media_types``: the media types the document says it may be."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    media_types: ClassVar[tuple[str, ...]] = ("application/octet-stream",)

    path: str
    media_type: str
    filename: str
    stat: os.stat_result | None = Field(default=None, exclude=True)


@dataclass(frozen=True)
class Call:
    """What a handler gets besides its inputs: the client, who asks, and the request."""

    client: Conveyor
    principal: Principal
    request: Request


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # under the API's root (/api/v1), with {name} for path parameters
    name: str  # the operationId: the handler's name
    summary: str
    description: str
    tag: str
    role: Role | None  # None: public, no key
    handler: Handler
    takes_call: bool
    path_model: type[BaseModel] | None
    query_model: type[BaseModel] | None
    body_model: type[BaseModel] | None
    body_optional: bool
    responses: tuple[tuple[int, type[BaseModel] | None], ...]  # (status, model); None: no body
    missing: tuple[type[ConveyorError], ...]  # errors that mean the path's resource is missing
    problems: tuple[int, ...]  # the problem statuses it may answer with, for the document


@dataclass
class Group:
    """The endpoints of one tag (queues, jobs, ...), in the order they are declared."""

    tag: str
    description: str
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        role: Role | None,
        summary: str,
        status: int = 200,
        body_optional: bool = False,
        missing: tuple[type[ConveyorError], ...] = (),
        problems: tuple[int, ...] = (),
    ) -> Callable[[Handler], Handler]:
        def declare(handler: Handler) -> Handler:
            self.endpoints.append(
                _endpoint(
                    handler,
                    method=method.upper(),
                    path=path,
                    tag=self.tag,
                    role=role,
                    summary=summary,
                    status=status,
                    body_optional=body_optional,
                    missing=missing,
                    problems=problems,
                )
            )
            return handler

        return declare


_INPUTS = ("path", "query", "body")


def _endpoint(handler: Handler, *, method: str, status: int, **options: Any) -> Endpoint:
    hints = typing.get_type_hints(handler)
    parameters = list(inspect.signature(handler).parameters)
    unknown = [name for name in parameters if name not in ("call", *_INPUTS)]
    if unknown:
        raise TypeError(f"{handler.__name__}: unknown parameters {unknown} (use call, path, query, body)")
    models: dict[str, type[BaseModel] | None] = {}
    for name in _INPUTS:
        model = hints.get(name) if name in parameters else None
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{handler.__name__}: {name} must be annotated with a pydantic model")
        if model is not None:
            model.model_rebuild(raise_errors=True)  # a model that cannot be built fails here, not per request
        models[name] = model
    path_names = set(_path_names(options["path"]))
    declared = set(models["path"].model_fields) if models["path"] else set()
    if path_names != declared:
        raise TypeError(
            f"{handler.__name__}: path parameters {sorted(path_names)} but model has {sorted(declared)}"
        )
    return Endpoint(
        method=method,
        name=handler.__name__,
        description=inspect.cleandoc(handler.__doc__ or ""),
        handler=handler,
        takes_call="call" in parameters,
        path_model=models["path"],
        query_model=models["query"],
        body_model=models["body"],
        responses=_responses(hints.get("return"), status),
        **options,
    )


def _path_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _responses(annotation: Any, status: int) -> tuple[tuple[int, type[BaseModel] | None], ...]:
    if annotation is None or annotation is type(None):
        return ((204, None),)
    members = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    found: list[tuple[int, type[BaseModel] | None]] = []
    for member in members:
        if not (isinstance(member, type) and issubclass(member, BaseModel)):
            raise TypeError(f"a handler returns pydantic models, not {member!r}")
        member.model_rebuild(raise_errors=True)
        own = getattr(member, "status_code", None)
        found.append((own if isinstance(own, int) else status, member))
    return tuple(found)


@dataclass(frozen=True)
class Served:
    """What an endpoint needs at run time: the client (opened on first use), the
    authenticator, and the body limit. Made by ``api.app.create_app``."""

    client: Callable[[], Awaitable[Conveyor]]
    auth: Authenticator
    body_limit: int


def path_routes(prefix: str, endpoints: Sequence[Endpoint], served: Served) -> list[BaseRoute]:
    """One Starlette route per path, dispatching on the method: a method the path does not
    have is a 405 whose Allow lists exactly the methods it has. Paths without parameters
    come first, so ``/jobs/bulk`` is never taken for ``/jobs/{job_id}``."""
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for endpoint in endpoints:
        methods = by_path.setdefault(endpoint.path, {})
        if endpoint.method in methods:
            raise TypeError(f"{endpoint.method} {endpoint.path} is declared twice")
        methods[endpoint.method] = starlette_endpoint(endpoint, served)
    ordered = sorted(by_path, key=lambda path: len(_path_names(path)))  # stable: declaration order
    return [Route(prefix + path, _Dispatch(by_path[path])) for path in ordered]


class _Dispatch:
    """An ASGI app serving one path: each method by its endpoint, any other a 405 problem.
    (An app, not a function, so that Starlette routes every method here.)"""

    def __init__(self, methods: dict[str, Callable[[Request], Awaitable[Response]]]) -> None:
        if "GET" in methods:
            methods = {**methods, "HEAD": methods["GET"]}
        self.methods = methods
        self.allow = ", ".join(sorted(methods))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        serve = self.methods.get(request.method)
        if serve is None:
            problem = Problem(
                METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed here (allowed: {self.allow})",
                headers={"Allow": self.allow},
            )
            response = render(problem, instance=request.url.path)
        else:
            response = await serve(request)
        await response(scope, receive, send)


def starlette_endpoint(endpoint: Endpoint, served: Served) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint function serving ``endpoint``."""

    async def serve(request: Request) -> Response:
        try:
            return await _serve(endpoint, served, request)
        except Problem as problem:
            return render(problem, instance=request.url.path)
        except ConfigurationError as exc:
            return render(unexpected(exc, method=request.method, path=request.url.path))
        except ConveyorError as exc:
            return render(problem_for(exc, missing=endpoint.missing), instance=request.url.path)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening any more
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return render(unexpected(exc, method=request.method, path=request.url.path))

    serve.__name__ = endpoint.name
    return serve


async def _serve(endpoint: Endpoint, served: Served, request: Request) -> Response:
    client = await served.client()
    if endpoint.role is None:
        principal = Principal(Role.VIEWER, "anonymous")
    else:
        principal = await served.auth.principal(request, client)
        require(principal, endpoint.role, f"{endpoint.method} {request.url.path}")
    kwargs: dict[str, Any] = {}
    if endpoint.takes_call:
        kwargs["call"] = Call(client, principal, request)
    if endpoint.path_model is not None:
        kwargs["path"] = params_model(endpoint.path_model, "path", request.path_params)
    if endpoint.query_model is not None:
        kwargs["query"] = params_model(endpoint.query_model, "query", _single_values(request))
    if endpoint.body_model is not None:
        raw = await read_body(request, served.body_limit)
        kwargs["body"] = body_model(
            endpoint.body_model, raw, request.headers.get("content-type"), optional=endpoint.body_optional
        )
    result = await endpoint.handler(**kwargs)
    return _response(endpoint, result)


def _single_values(request: Request) -> dict[str, str]:
    params = request.query_params
    repeated = sorted({key for key in params if len(params.getlist(key)) > 1})
    if repeated:
        raise Problem(
            VALIDATION,
            f"query parameters given more than once: {', '.join(repeated)}",
            [FieldError("query", key, "given more than once") for key in repeated],
        )
    return {key: params[key] for key in params}


def _response(endpoint: Endpoint, result: Any) -> Response:
    if result is None:
        return Response(status_code=204)
    for status, model in endpoint.responses:
        if model is not None and type(result) is model and isinstance(result, FileOut):
            return FileResponse(
                result.path,
                status_code=status,
                media_type=result.media_type,
                filename=result.filename,
                stat_result=result.stat,
                headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
            )
        if model is not None and type(result) is model:
            return Response(
                result.model_dump_json(),
                status_code=status,
                media_type="application/json",
                headers={"Cache-Control": "no-store"},
            )
    raise TypeError(f"{endpoint.name} returned {type(result).__name__}, which it does not declare")
