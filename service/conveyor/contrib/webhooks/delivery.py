"""One delivery attempt over HTTP: the POST, the redirects it follows, the answer read.

Each hop's host is resolved and judged by the guard (``targets``), and the request connects
to a vetted address itself: the URL's host is replaced by the address, while the Host header
and, over https, the TLS server name (by which the certificate is checked) stay the URL's
host. A name that resolves differently by the time of the connection (DNS rebinding) so
gains nothing. Proxies from the environment are not used, for the same reason.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from .settings import WebhookSettings
from .targets import IPAddress, TargetRefused, authority, check_url, pinned, vetted_addresses

EXCERPT_BYTES = 1024  # of the response body, kept in the result and quoted in errors
FOLLOWED_REDIRECTS = frozenset({307, 308})  # they keep the method and the body


@dataclass(frozen=True)
class Answer:
    """The last hop's answer."""

    status: int
    url: httpx.URL
    excerpt: str
    retry_after: str | None
    location: str | None
    redirects: int


async def deliver(
    first: httpx.URL,
    body: bytes,
    signed: Mapping[str, str],
    extra: Mapping[str, str],
    config: WebhookSettings,
    deadline: asyncio.Timeout,
) -> Answer:
    """POST to ``first``, following 307/308 up to ``max_redirects``, every hop's addresses
    vetted and connected to as vetted; the answer of the last hop.

    ``deadline`` (the attempt's) covers everything up to the last hop's status and headers.
    Once they are in, the answer is given, whatever happens to its body: the deadline is
    lifted, and the excerpt is read within a time of its own, a body that stalls or breaks
    leaving a shorter excerpt rather than a failed attempt (a 2xx must not be sent again)."""
    url = first
    async with httpx.AsyncClient(
        verify=_tls(config),
        trust_env=False,  # no proxy from the environment: it would connect to unvetted addresses
        follow_redirects=False,
        timeout=httpx.Timeout(config.timeout),
    ) as client:
        for hop in range(config.max_redirects + 1):
            headers = httpx.Headers({"user-agent": config.user_agent})
            if origin(url) == origin(first):
                headers.update(extra)  # a job's own headers (credentials) stay with its origin
            headers.update(
                {
                    "content-type": "application/json",
                    "accept-encoding": "identity",  # the excerpt is read raw, and bounded
                    "host": authority(url),
                    **signed,
                }
            )
            addresses = await vetted_addresses(url, config.policy)
            response = await _post(client, url, addresses, body, headers)
            location = response.headers.get("location")
            if response.status_code in FOLLOWED_REDIRECTS and location and hop < config.max_redirects:
                await response.aclose()  # a redirect's body is not read
                url = _redirected(url, location)
                continue
            deadline.reschedule(None)
            try:
                excerpt = await _excerpt(response, config.timeout)
            finally:
                await response.aclose()
            return Answer(
                response.status_code, url, excerpt, response.headers.get("retry-after"), location, hop
            )
    raise AssertionError("unreachable: the last hop returns")


async def _post(
    client: httpx.AsyncClient, url: httpx.URL, addresses: list[IPAddress], body: bytes, headers: httpx.Headers
) -> httpx.Response:
    """The response from the first vetted address that takes the connection. The request goes
    to the address itself; Host and (over https) the TLS server name, by which the certificate
    is checked, stay the URL's host."""
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    for index, address in enumerate(addresses):
        request = client.build_request(
            "POST", pinned(url, address), content=body, headers=headers, extensions=extensions
        )
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError:
            if index == len(addresses) - 1:
                raise
    raise AssertionError("unreachable: vetted_addresses returns at least one address")


def _redirected(url: httpx.URL, location: str) -> httpx.URL:
    try:
        return check_url(url.join(location))
    except (ValueError, httpx.InvalidURL) as exc:
        raise TargetRefused(
            f"{url} redirected to {location[:200]!r}, which cannot be followed: {exc}"
        ) from None


async def _excerpt(response: httpx.Response, within: float) -> str:
    """The first EXCERPT_BYTES of the body as text (its charset, else UTF-8; what cannot be
    decoded replaced), reading no more than that much past it, for at most ``within``
    seconds: what arrived by then, when the body stalls or the connection breaks."""
    data = bytearray()
    complete = False
    try:
        async with asyncio.timeout(within):
            async for chunk in response.aiter_raw():
                data += chunk
                if len(data) > EXCERPT_BYTES:
                    break
            else:
                complete = True
    except (TimeoutError, httpx.HTTPError):
        pass  # the status is the answer; the excerpt is what came with it
    text = _decode(bytes(data[:EXCERPT_BYTES]), response.charset_encoding, final=complete)
    if len(data) > EXCERPT_BYTES:
        text += "…"
    return text.replace("\x00", "\ufffd")  # a NUL cannot be stored in a JSON result


def _decode(data: bytes, charset: str | None, *, final: bool) -> str:
    """``final`` False: the text was cut, and a character cut with it is left out, not garbled."""
    for encoding in (charset, "utf-8"):
        if not encoding:
            continue
        try:
            decoded = codecs.getincrementaldecoder(encoding)(errors="replace").decode(data, final=final)
        except Exception:
            continue
        if isinstance(decoded, str):
            return decoded
    return data.decode("utf-8", "replace")


def _tls(config: WebhookSettings) -> ssl.SSLContext:
    return _tls_context(config.ca_file)


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """One context per CA bundle, made once: loading the system's authorities takes a few
    milliseconds, too much to repeat for every webhook. (A bundle changed on disk is read
    again when the worker restarts.)"""
    if ca_file is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=ca_file)


def origin(url: httpx.URL) -> tuple[str, bytes, int]:
    return url.scheme, url.raw_host, url.port or (443 if url.scheme == "https" else 80)
