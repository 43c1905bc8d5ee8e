"""Rendering the dashboard's pages: one Jinja2 environment over the package's templates
(autoescaped), and a response helper that gives every template the request, the session's
CSRF token and the names every page needs."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import NoMatchFound

from ..ops.roles import Principal, Role
from .overview import age

environment = Environment(
    loader=PackageLoader("conveyor.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["age"] = age

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


def link(request: Request, name: str, /, **params: Any) -> str:
    """The path of a named route, under the app's mount point (no scheme or host: right behind
    a proxy that terminates TLS too)."""
    return request.url_for(name, **params).path


def maybe_link(request: Request, name: str, /, **params: Any) -> str | None:
    """The path of a named route, or None if this app has no such route (a link to another
    section is left out rather than failing the page)."""
    try:
        return link(request, name, **params)
    except NoMatchFound:
        return None


def page(
    request: Request,
    template: str,
    *,
    principal: Principal | None = None,
    csrf: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    body = environment.get_template(template).render(
        request=request,
        url_for=lambda route, /, **params: link(request, route, **params),
        maybe_url=lambda route, /, **params: maybe_link(request, route, **params),
        principal=principal,
        can_operate=principal is not None and principal.role >= Role.OPERATOR,
        csrf=csrf,
        **context,
    )
    return HTMLResponse(body, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})})
