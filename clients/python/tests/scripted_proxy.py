"""A tiny real HTTP server in front of a real herald, for what herald itself cannot do.

herald with its default (memory) broker never answers ``503 unavailable`` on the API,
never sends ``Retry-After``, never stalls and never answers with a non-JSON page; a
broker outage, a proxy or a hung node does. This server answers the next requests
from a script of such replies and forwards every other request to herald unchanged,
so a retried call still ends at the real herald (and its WebSocket members show
whether anything was delivered twice).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass
class Reply:
    """One scripted reply (or a stall of ``stall`` seconds before it)."""

    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0
    content_type: str = "application/json"


def herald_error(status: int, code: str, **headers: str) -> Reply:
    """A reply shaped like herald's errors."""
    return Reply(status, f'{{"error":"{code}","message":"scripted {code}"}}', dict(headers))


class ScriptedProxy:
    """Serves ``script`` first, then forwards to ``upstream``; records every request."""

    def __init__(self, upstream: str, script: list[Reply]) -> None:
        self.script: deque[Reply] = deque(script)
        self.requests: list[tuple[tuple[str, int], str, str]] = []
        self._lock = threading.Lock()
        self._upstream = httpx.Client(base_url=upstream, timeout=10)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.requests.append((self.client_address, self.command, self.path))
                    reply = proxy.script.popleft() if proxy.script else None
                if reply is None:
                    forwarded = proxy._upstream.request(
                        self.command,
                        self.path,
                        content=body,
                        headers={k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")},
                    )
                    reply = Reply(forwarded.status_code, forwarded.text, content_type=forwarded.headers.get("content-type", ""))
                if reply.stall:
                    time.sleep(reply.stall)
                payload = reply.body.encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", reply.content_type)
                    self.send_header("content-length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except ConnectionError:
                    pass  # the client gave up (a timeout test): nobody to answer

            do_GET = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def connections(self) -> set[tuple[str, int]]:
        """Distinct client (address, port) pairs seen, i.e. TCP connections used."""
        return {address for address, _, _ in self.requests}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()
