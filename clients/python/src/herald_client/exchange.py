"""What the sync and async clients share: settings, headers, bodies and reply mapping.

A call goes: :class:`~herald_client.calls.Call` -> :meth:`Exchange.request_args` ->
(the client's own I/O) -> :meth:`Exchange.result` (the parsed reply) or
:func:`api_error` (a :class:`~herald_client.errors.HeraldAPIError`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from . import __version__
from .calls import Call
from .errors import HeraldAPIError, error_class_for
from .retry import RetryPolicy, parse_retry_after

T = TypeVar("T")

#: A bearer token, or a function returning the current one (called before every try,
#: so a token that expires can be re-minted: see ``herald_client.tokens.BackendTokens``).
TokenSource = str | Callable[[], str] | None

#: Default timeouts: connecting should be quick on a LAN; a notify answers after
#: local fan-out, which is fast, but leave room for a loaded hub.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)

#: Default pool: enough keep-alive connections for a busy web worker's threads.
DEFAULT_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10)


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Exchange:
    """Settings of one client and the request/reply mapping both clients use."""

    def __init__(
        self,
        url: str,
        token: TokenSource,
        retry: RetryPolicy,
        json_dumps: Callable[[Any], str] | None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"herald url must start with http:// or https://, got {url!r}")
        self.base_url = url.rstrip("/")
        self.token = token
        self.retry = retry
        self.json_dumps = json_dumps or _compact_json
        self.user_agent = f"herald-client-python/{__version__}"

    def request_args(self, call: Call[Any]) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.request`` / ``AsyncClient.request``."""
        headers = {"accept": "application/json", "user-agent": self.user_agent}
        token = self.token() if callable(self.token) else self.token
        if token:
            headers["authorization"] = f"Bearer {token}"
        args: dict[str, Any] = {
            "method": call.method,
            "url": self.base_url + call.path,
            "headers": headers,
        }
        if call.params:
            args["params"] = call.params
        if call.body is not None:
            headers["content-type"] = "application/json"
            args["content"] = self.json_dumps(call.body).encode("utf-8")
        return args

    @staticmethod
    def result(call: Call[T], response: httpx.Response) -> T:
        """The parsed reply of a successful response."""
        return call.parse(response.json())


def api_error(response: httpx.Response) -> HeraldAPIError:
    """The error for a non-2xx response, from herald's ``{"error","message"}`` body."""
    code: str | None = None
    message = response.reason_phrase or "error"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body["error"]
        message = str(body.get("message", message))
    elif response.text:
        # Not herald's body (a proxy's error page, say): keep a bounded excerpt.
        message = response.text[:200]
    return error_class_for(response.status_code)(
        status=response.status_code,
        code=code,
        message=message,
        request_id=response.headers.get("x-request-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def is_retryable(error: HeraldAPIError) -> bool:
    """Only ``503 unavailable`` means herald published nothing and may succeed later."""
    return error.status == 503 and error.code == "unavailable"
