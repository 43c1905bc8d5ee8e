"""A real HTTP server for webhook tests: scripted answers, every request recorded.

Runs ``http.server`` on 127.0.0.1 with port 0 (the system picks a free one) in a thread of
its own, so in-process workers and worker processes alike can post to it. A reply may hang
until the test releases it (for timeouts: the test waits on its own condition, never on a
sleep).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # hold the answer until release() (or the server stops)
    stall_body: bool = False  # send the status, headers and half the body, then hold until release()


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float  # time.time() when it arrived


class Receiver:
    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Received] = []
        self._script: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            do_GET = do_POST
            do_PUT = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the tests look at receiver.requests

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:  # https: the handshake happens as each connection is accepted
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-receiver", daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with ``replies``, then 200 "ok"."""
        with self._lock:
            self._script.setdefault(path, deque()).extend(replies)

    def to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def release(self) -> None:
        self._released.set()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append(
                Received(
                    handler.command,
                    handler.path,
                    {k.lower(): v for k, v in handler.headers.items()},
                    body,
                    time.time(),
                )
            )
            queued = self._script.get(handler.path)
            reply = queued.popleft() if queued else Reply()
        if reply.hang:
            self._released.wait(60)
            return  # the client gave up long ago: close without an answer
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        if reply.stall_body:
            handler.wfile.write(reply.body[: len(reply.body) // 2])
            handler.wfile.flush()
            self._released.wait(60)
            return
        handler.wfile.write(reply.body)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@contextmanager
def running_receiver(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    receiver = Receiver(tls=tls)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
