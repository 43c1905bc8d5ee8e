"""What every page and action of the dashboard shares: the session, the form, the CSRF check,
rendering with the session's names, and turning the service layer's refusals into pages.

Contract:

- A page needs a session (``session``: the API key in an HttpOnly cookie, checked again on
  every request); without one it redirects to the login page (an htmx request is answered
  401 with ``HX-Redirect`` to it).
- A state-changing request is a POST of an urlencoded form. ``checked_post`` refuses it with
  403 before anything is done unless it has a session and carries that session's CSRF token
  (form field ``csrf`` or header ``X-CSRF-Token``).
- Actions go through the service layer (``conveyor.ops``) as the session's principal; the
  role is checked there, so a viewer's forged POST is refused with 403 even though its page
  showed no button. A Conveyor error becomes an error page with the API's status for it.
- After an action the browser is sent back (303) to a page of this dashboard, with a
  one-request notice (the ``conveyor_notice`` cookie) saying what was done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..api.auth import Authenticator
from ..api.problems import Problem, problem_for
from ..errors import AuthenticationError, ConveyorError
from ..ops.roles import Principal
from ..queue.client import Conveyor
from . import session as sessions
from .render import link, page

FORM_LIMIT = 256 * 1024  # bytes: a schedule's arguments or a list of selected jobs at most
NOTICE_COOKIE = "conveyor_notice"
GetClient = Callable[[], Awaitable[Conveyor]]


@dataclass(frozen=True)
class Session:
    key: str
    principal: Principal
    csrf: str


class Form:
    """An urlencoded form: the first value of a field (``get``), or all of them (``getlist``)."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._fields.get(name)
        return values[0] if values else default

    def text(self, name: str) -> str:
        """A field's value, stripped; empty when absent."""
        return (self.get(name) or "").strip()

    def getlist(self, name: str) -> list[str]:
        return list(self._fields.get(name, []))

    def __contains__(self, name: object) -> bool:
        return name in self._fields


Action = Callable[[Conveyor, Principal, Form], Awaitable[str | None]]


class DashboardBase:
    def __init__(self, get_client: GetClient, authenticator: Authenticator) -> None:
        self.get_client = get_client
        self.authenticator = authenticator

    async def session(self, request: Request) -> Session | None:
        """The request's session, authenticated now; None without one, or if its key is refused.
        Too many failed attempts from the client raise the API's Problem (429)."""
        key = sessions.session_key(request)
        if key is None:
            return None
        client = await self.get_client()
        try:
            principal = await self.authenticator.key_principal(request, client, key)
        except AuthenticationError:
            return None
        return Session(key, principal, sessions.csrf_token(key))

    def render(
        self,
        request: Request,
        found: Session | None,
        template: str,
        *,
        status_code: int = 200,
        **context: Any,
    ) -> Response:
        """A page of a session (or of none): its principal and CSRF token, and the notice the
        last action left, shown once."""
        notice = request.cookies.get(NOTICE_COOKIE)
        response = page(
            request,
            template,
            principal=None if found is None else found.principal,
            csrf=None if found is None else found.csrf,
            notice=unquote(notice) if notice else None,
            status_code=status_code,
            **context,
        )
        if notice and not request.headers.get("hx-request"):
            response.delete_cookie(NOTICE_COOKIE, path=sessions.cookie_path(request))
        return response

    async def page_session(self, request: Request) -> Session | Response:
        """The session of a page, or the response to send instead (to the login page)."""
        try:
            found = await self.session(request)
        except Problem as problem:
            return self.render(
                request,
                None,
                "error.html",
                message=problem.detail,
                status_code=problem.kind.status,
                headers=problem.headers,
            )
        if found is not None:
            return found
        ended = sessions.session_key(request) is not None
        login = link(request, "dashboard_login") + ("?ended=1" if ended else "")
        if request.headers.get("hx-request"):
            response: Response = Response(status_code=401, headers={"HX-Redirect": login})
        else:
            response = RedirectResponse(login, status_code=303)
        if ended:
            sessions.end_session(request, response)
        return response

    async def checked_post(self, request: Request) -> tuple[Session, Form] | Response:
        """A POST's session and form, once its CSRF token is checked; or the refusal to send."""
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        try:
            found = await self.session(request)
        except Problem as problem:
            return self.render(
                request,
                None,
                "error.html",
                message=problem.detail,
                status_code=problem.kind.status,
                headers=problem.headers,
            )
        if found is None:
            return self.refused(
                request, None, "You are not signed in (or your key was revoked): sign in again."
            )
        sent = form.get(sessions.CSRF_FIELD) or request.headers.get(sessions.CSRF_HEADER)
        if not sessions.csrf_valid(found.key, sent):
            return self.refused(request, found, "The form carried no valid CSRF token.")
        return found, form

    async def act(
        self,
        request: Request,
        action: Action,
        back: str,
        *,
        missing: tuple[type[ConveyorError], ...] = (),
    ) -> Response:
        """A POST of a session: CSRF-checked, then the action as the session's principal (its
        role checked by the service layer), then back to ``back`` with the action's notice.
        ``missing``: the errors meaning the thing the path names does not exist (404)."""
        checked = await self.checked_post(request)
        if isinstance(checked, Response):
            return checked
        found, form = checked
        try:
            notice = await action(await self.get_client(), found.principal, form)
        except ConveyorError as exc:
            return self.failed(request, found, exc, missing=missing)
        return self.redirect(request, back, notice)

    def redirect(self, request: Request, to: str, notice: str | None = None) -> Response:
        response = RedirectResponse(to, status_code=303)
        if notice:
            response.set_cookie(
                NOTICE_COOKIE,
                quote(notice),
                path=sessions.cookie_path(request),
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    def failed(
        self,
        request: Request,
        found: Session | None,
        exc: ConveyorError,
        *,
        missing: tuple[type[ConveyorError], ...] = (),
    ) -> Response:
        """The page of a refusal by the service layer, with the API's status for it."""
        problem = problem_for(exc, missing=missing)
        return self.render(request, found, "error.html", message=str(exc), status_code=problem.kind.status)

    def refused(self, request: Request, found: Session | None, message: str) -> Response:
        return self.render(request, found, "error.html", message=message, status_code=403)

    def not_found(self, request: Request, found: Session | None, message: str) -> Response:
        return self.render(request, found, "error.html", message=message, status_code=404)


async def read_form(request: Request) -> Form | Response:
    """An urlencoded form, or the refusal of a body that is too large or of another type."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("application/x-www-form-urlencoded", ""):
        return page(request, "error.html", message="Expected a form.", status_code=415)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return page(request, "error.html", message="The form is too large.", status_code=413)
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=10_000)
    except (UnicodeDecodeError, ValueError):
        return page(request, "error.html", message="The form is not UTF-8 urlencoded.", status_code=400)
    return Form(fields)
