"""The dashboard's session and its CSRF tokens.

Contract:

- The session is the API key itself, in the cookie ``conveyor_session``: HttpOnly,
  SameSite=Strict, Secure when the request came over HTTPS, scoped to the app's path (its
  root_path when mounted). Nothing is stored on the server, so every process of ``conveyor
  api --workers N`` serves the same session.
- Every request of a session is authenticated again, by the API's own
  :class:`~conveyor.api.auth.Authenticator` (the same KeyCache and failed-attempt limit as a
  ``Bearer`` header): a key revoked ends its sessions at the next request, and a
  cookie holding a wrong key counts as a failed attempt. A session whose key is refused is
  sent to the login page and its cookie cleared.
- The CSRF token of a session is HMAC-SHA256 of a fixed label under the session's key:
  only a page served to that session (which holds the token; the key itself never reaches a
  page) can give it, it needs no server secret, and it changes with the key. Every POST of
  a session carries it (form field ``csrf`` or header ``X-CSRF-Token``) and is refused with
  403 without it, before anything is done.
- The login form, made before there is a session, is protected by a double-submit token:
  GET /login sets a random ``conveyor_login`` cookie (HttpOnly, SameSite=Strict) and puts the
  same value in the form; a POST /login whose two values differ is refused with 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "conveyor_session"
LOGIN_COOKIE = "conveyor_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_LABEL = b"conveyor dashboard csrf v1"


def cookie_path(request: Request) -> str:
    """The path the cookies are scoped to: the app's own (its mount point, if mounted)."""
    root = str(request.scope.get("root_path", "") or "")
    return root.rstrip("/") or "/"


def session_key(request: Request) -> str | None:
    """The API key the session cookie holds, if any (not yet checked)."""
    key = request.cookies.get(SESSION_COOKIE)
    return key if key else None


def start_session(request: Request, response: Response, key: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        key,
        path=cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path=cookie_path(request))


def end_session(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path=cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def csrf_token(key: str) -> str:
    """The session's CSRF token: HMAC-SHA256 of a fixed label under its key."""
    return hmac.new(key.encode(), _LABEL, hashlib.sha256).hexdigest()


def csrf_valid(key: str, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(csrf_token(key).encode(), sent.encode())


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def set_login_token(request: Request, response: Response, token: str) -> None:
    """The login form's double-submit token, as its cookie."""
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        path=cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def login_token_valid(request: Request, sent: str | None) -> bool:
    cookie = request.cookies.get(LOGIN_COOKIE)
    if not cookie or not sent:
        return False
    return hmac.compare_digest(cookie.encode(), sent.encode())
