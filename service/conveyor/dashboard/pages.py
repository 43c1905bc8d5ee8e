"""The dashboard's own pages: login and logout, the overview and its queue table (a fragment
htmx polls), and pausing and resuming a queue from it. What every page shares (the session,
the CSRF check, the refusals) is in ``base``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..api.problems import Problem
from ..errors import AuthenticationError, InvalidOptionError, UnknownQueueError
from ..ops import queues as queue_ops
from ..ops.roles import Principal
from ..queue.client import Conveyor
from ..tasks import check_queue_name
from . import session as sessions
from .base import DashboardBase, Form, read_form
from .overview import read_overview
from .queue_pages import throughput_context
from .render import link

QUEUE_MISSING = (UnknownQueueError, InvalidOptionError)


class Dashboard(DashboardBase):
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
        response = self.render(
            request, None, "login.html", login_token=token, message=message, status_code=status_code
        )
        response.headers.update(headers)
        sessions.set_login_token(request, response, token)
        return response

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        if not sessions.login_token_valid(request, form.get(sessions.CSRF_FIELD)):
            return self.refused(request, None, "The login form was not the one this server gave: reload it.")
        key = form.text("key")
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
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        response = RedirectResponse(link(request, "dashboard_login"), status_code=303)
        if sessions.session_key(request) is None:
            # No session cookie came: nothing to end. (A form another site posts here comes
            # without the SameSite=Strict cookie; deleting it anyway signed the user out.)
            return response
        found = await self.session(request)
        if found is not None and not sessions.csrf_valid(found.key, form.get(sessions.CSRF_FIELD)):
            return self.refused(request, found, "The form carried no valid CSRF token.")
        sessions.end_session(request, response)
        return response

    # -- the overview -----------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        client = await self.get_client()
        data = await read_overview(client, found.principal)
        throughput = await queue_ops.throughput(client, found.principal)
        return self.render(
            request,
            found,
            "overview.html",
            overview=data,
            section="overview",
            **throughput_context(request, throughput),
        )

    async def queues_fragment(self, request: Request) -> Response:
        found = await self.page_session(request)
        if isinstance(found, Response):
            return found
        data = await read_overview(await self.get_client(), found.principal)
        return self.render(request, found, "_queues.html", overview=data)

    # -- pausing and resuming a queue -------------------------------------------------

    async def pause_queue(self, request: Request) -> Response:
        name = request.path_params["queue"]

        async def pause(client: Conveyor, principal: Principal, _: Form) -> str:
            await queue_ops.check_queue(client, check_queue_name(name))
            await queue_ops.pause_queue(client, principal, name)
            return f"Queue {name} paused."

        return await self.act(request, pause, _back(request), missing=QUEUE_MISSING)

    async def resume_queue(self, request: Request) -> Response:
        name = request.path_params["queue"]

        async def resume(client: Conveyor, principal: Principal, _: Form) -> str:
            await queue_ops.check_queue(client, check_queue_name(name))
            await queue_ops.resume_queue(client, principal, name)
            return f"Queue {name} resumed."

        return await self.act(request, resume, _back(request), missing=QUEUE_MISSING)


def _back(request: Request) -> str:
    """Where an action returns: the dashboard page named by the form's ``back`` query
    parameter if it is one of this app's paths, else the overview."""
    back = request.query_params.get("back", "")
    root = link(request, "dashboard_overview")
    if back.startswith(root) and not back.startswith("//") and "\\" not in back:
        return back
    return root
