"""The dashboard's handlers: login and logout, the overview and its queue table (a fragment
htmx polls), and pausing and resuming a queue.

Every page but the login form needs a session (``session``: the API key in an HttpOnly
cookie, checked again on every request); without one a page redirects to the login page
(an htmx request is answered 401 with ``HX-Redirect`` to it) and a POST is refused with 403.
Every POST is CSRF-checked before anything is done. Actions go through the service layer
(``conveyor.ops``), which checks the role: a viewer's forged POST is refused there with 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..api.auth import Authenticator
from ..api.problems import Problem
from ..errors import AuthenticationError, ForbiddenError, InvalidOptionError, UnknownQueueError
from ..ops import queues as queue_ops
from ..ops.roles import Principal
from ..queue.client import Conveyor
from ..tasks import check_queue_name
from . import session as sessions
from .overview import read_overview
from .render import link, page

FORM_LIMIT = 16 * 1024  # bytes: the dashboard's forms are a key and a token
GetClient = Callable[[], Awaitable[Conveyor]]
Action = Callable[[Conveyor, Principal], Awaitable[None]]


@dataclass(frozen=True)
class Session:
    key: str
    principal: Principal
    csrf: str


class Dashboard:
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

    # -- login and logout -------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        message = None
        if request.query_params.get("ended"):
            message = "Your session has ended (its key was revoked or has expired): sign in again."
        return self._login_page(request, message=message)

    def _login_page(
        self, request: Request, *, message: str | None = None, status_code: int = 200, **headers: str
    ) -> Response:
        token = sessions.new_login_token()
        response = page(
            request,
            "login.html",
            login_token=token,
            message=message,
            status_code=status_code,
            headers=headers,
        )
        sessions.set_login_token(request, response, token)
        return response

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        if isinstance(form, Response):
            return form
        if not sessions.login_token_valid(request, form.get(sessions.CSRF_FIELD)):
            return self._refused(request, None, "The login form was not the one this server gave: reload it.")
        key = form.get("key", "").strip()
        client = await self.get_client()
        try:
            await self.authenticator.key_principal(request, client, key)
        except AuthenticationError:
            return self._login_page(
                request,
                message="That API key was refused: it is unknown, revoked or expired.",
                status_code=401,
            )
        except Problem as problem:
            return self._login_page(
                request, message=problem.detail, status_code=problem.kind.status, **problem.headers
            )
        response = RedirectResponse(link(request, "dashboard_overview"), status_code=303)
        sessions.start_session(request, response, key)
        return response

    async def logout(self, request: Request) -> Response:
        form = await _form(request)
        if isinstance(form, Response):
            return form
        found = await self.session(request)
        if found is not None and not sessions.csrf_valid(found.key, form.get(sessions.CSRF_FIELD)):
            return self._refused(request, found, "The form carried no valid CSRF token.")
        response = RedirectResponse(link(request, "dashboard_login"), status_code=303)
        sessions.end_session(request, response)
        return response

    # -- pages ------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        found = await self._page_session(request)
        if isinstance(found, Response):
            return found
        data = await read_overview(await self.get_client(), found.principal)
        return page(request, "overview.html", principal=found.principal, csrf=found.csrf, overview=data)

    async def queues_fragment(self, request: Request) -> Response:
        found = await self._page_session(request)
        if isinstance(found, Response):
            return found
        data = await read_overview(await self.get_client(), found.principal)
        return page(request, "_queues.html", principal=found.principal, csrf=found.csrf, overview=data)

    async def _page_session(self, request: Request) -> Session | Response:
        try:
            found = await self.session(request)
        except Problem as problem:
            return page(request, "error.html", message=problem.detail, status_code=problem.kind.status)
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

    # -- actions ----------------------------------------------------------------------

    async def pause_queue(self, request: Request) -> Response:
        name = request.path_params["queue"]
        return await self._act(request, name, lambda c, p: queue_ops.pause_queue(c, p, name))

    async def resume_queue(self, request: Request) -> Response:
        name = request.path_params["queue"]
        return await self._act(request, name, lambda c, p: queue_ops.resume_queue(c, p, name))

    async def _act(self, request: Request, queue: str, action: Action) -> Response:
        """A POST of a session: CSRF-checked, then the action as the session's principal (its
        role checked by the service layer), then back to the overview."""
        form = await _form(request)
        if isinstance(form, Response):
            return form
        try:
            found = await self.session(request)
        except Problem as problem:
            return page(request, "error.html", message=problem.detail, status_code=problem.kind.status)
        if found is None:
            return self._refused(
                request, None, "You are not signed in (or your key was revoked): sign in again."
            )
        sent = form.get(sessions.CSRF_FIELD) or request.headers.get(sessions.CSRF_HEADER)
        if not sessions.csrf_valid(found.key, sent):
            return self._refused(request, found, "The form carried no valid CSRF token.")
        client = await self.get_client()
        try:
            await queue_ops.check_queue(client, check_queue_name(queue))
            await action(client, found.principal)
        except ForbiddenError as exc:
            return self._refused(request, found, str(exc))
        except (UnknownQueueError, InvalidOptionError) as exc:
            return page(
                request,
                "error.html",
                principal=found.principal,
                csrf=found.csrf,
                message=str(exc),
                status_code=404,
            )
        return RedirectResponse(link(request, "dashboard_overview"), status_code=303)

    def _refused(self, request: Request, found: Session | None, message: str) -> Response:
        return page(
            request,
            "error.html",
            principal=None if found is None else found.principal,
            csrf=None if found is None else found.csrf,
            message=message,
            status_code=403,
        )


async def _form(request: Request) -> dict[str, str] | Response:
    """An urlencoded form's fields (the first value of each), or the refusal of a body that
    is too large or of another type."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("application/x-www-form-urlencoded", ""):
        return page(request, "error.html", message="Expected a form.", status_code=415)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return page(request, "error.html", message="The form is too large.", status_code=413)
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return page(request, "error.html", message="The form is not UTF-8.", status_code=400)
    return {name: values[0] for name, values in fields.items()}
