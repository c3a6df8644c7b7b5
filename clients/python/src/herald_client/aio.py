"""``AsyncHerald``: the asyncio client, for async views, ASGI apps and workers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import calls
from .calls import Call
from .errors import HeraldConnectionError, HeraldTimeoutError
from .exchange import DEFAULT_LIMITS, DEFAULT_TIMEOUT, Exchange, TokenSource, api_error, is_retryable
from .models import GroupInfo, GroupList, History, NotifyResult
from .retry import RetryPolicy

T = TypeVar("T")


class AsyncHerald:
    """A connection pool to one herald, bound to the event loop that first uses it.

    Create one per process (e.g. at module level) and reuse it: connections are kept
    alive between calls. Use it as an async context manager, or await :meth:`aclose`.

    Args:
        url: herald's base URL, e.g. ``"http://127.0.0.1:8080"``.
        token: a backend token (``scope`` containing ``notify``), a function returning
            the current one, or ``None`` for a herald with authentication off.
        timeout: seconds, or an ``httpx.Timeout`` for connect/read/write/pool separately.
        retry: when and how to retry (see :class:`~herald_client.RetryPolicy`).
        limits: connection pool size (``httpx.Limits``).
        json_dumps: encodes request bodies (e.g. with Django's ``DjangoJSONEncoder``).
        transport: an ``httpx`` transport, for proxies or Unix sockets.
    """

    def __init__(
        self,
        url: str,
        token: TokenSource = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
        json_dumps: Callable[[Any], str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._exchange = Exchange(url, token, retry or RetryPolicy(), json_dumps)
        self._http = httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport)

    async def notify(
        self,
        group: str | None = None,
        *,
        groups: Sequence[str] | None = None,
        event: str = "message",
        data: Any,
        users: Sequence[str] | None = None,
    ) -> NotifyResult:
        """Sends ``data`` as ``event`` to every member of ``group`` (or of each of
        ``groups``); with ``users``, only to those users' connections."""
        return await self._send(calls.notify(group, groups, event, data, users))

    async def notify_batch(self, items: Sequence[Mapping[str, Any]]) -> tuple[NotifyResult, ...]:
        """Sends many notifications in one request (``POST /notify/batch``, 1-1000
        items, each a dict of :meth:`notify`'s keyword arguments). herald checks the
        whole batch first: one bad item refuses all of it (the error names its index)."""
        return await self._send(calls.notify_batch(items))

    async def history(self, group: str, since: int | None = None, limit: int | None = None) -> History:
        """The notifications ``group`` keeps after offset ``since`` (oldest first, at most
        ``limit``), with the history's epoch and the group's latest offset."""
        return await self._send(calls.history(group, since, limit))

    async def close_group(self, group: str, code: int = 1000, reason: str = "") -> int:
        """Closes every connection in ``group`` with ``code`` (1000 or 3000-4999) and
        ``reason``; returns how many were closed."""
        return await self._send(calls.close_group(group, code, reason))

    async def close_user(self, user: str, code: int = 1000, reason: str = "") -> int:
        """Closes every connection of ``user`` (a token ``sub``), all groups and tabs."""
        return await self._send(calls.close_user(user, code, reason))

    async def group(self, group: str, limit: int | None = None) -> GroupInfo:
        """Subscriber count, latest offset and (at most ``limit``) users of ``group``."""
        return await self._send(calls.group(group, limit))

    async def groups(self, limit: int | None = None) -> GroupList:
        """Groups with members on this herald node, sorted by name."""
        return await self._send(calls.groups(limit))

    async def aclose(self) -> None:
        """Closes the pooled connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncHerald:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        retry = self._exchange.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(**self._exchange.request_args(call))
            except httpx.ConnectError as e:
                # The connection never opened, so the request was not sent: safe to retry.
                delay = retry.delay(attempt)
                if delay is None:
                    raise HeraldConnectionError(f"cannot connect to herald at {self._exchange.base_url}: {e}") from e
                await asyncio.sleep(delay)
                continue
            except httpx.TimeoutException as e:
                raise HeraldTimeoutError(f"herald did not answer in time: {e!r}") from e
            except httpx.TransportError as e:
                raise HeraldConnectionError(f"connection to herald failed: {e!r}") from e
            if response.is_success:
                return self._exchange.result(call, response)
            error = api_error(response)
            delay = retry.delay(attempt, error.retry_after) if is_retryable(error) else None
            if delay is None:
                raise error
            await asyncio.sleep(delay)
