"""A Django Channels layer that sends through herald (``pip install herald-client[channels]``).

The WebSockets live in herald; Django keeps only the code that *sends*::

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "herald_client.channels.HeraldChannelLayer",
            "CONFIG": {"url": "http://127.0.0.1:8080", "token": "..."},
        }
    }

    async_to_sync(get_channel_layer().group_send)(
        "chat_lobby", {"type": "chat.message", "message": "hi"}
    )

``group_send`` becomes ``POST /notify`` (``event`` = the message's ``type``, ``data`` =
the whole message); ``{"type": "websocket.close", "code": N, "reason": ...}`` becomes a
group close. Receiving (``group_add``, ``receive``, ...) is herald's job now, so those
methods raise :class:`SocketsMovedToHerald`. The migration guide is the README of
herald's ``clients/python`` (section "Moving a Channels app to herald").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from channels.layers import BaseChannelLayer  # type: ignore[import-untyped]  # Channels ships no types

from .aio import AsyncHerald
from .exchange import DEFAULT_TIMEOUT, TokenSource
from .models import NotifyResult
from .names import require_valid_name
from .retry import RetryPolicy

#: Where the error messages send people.
MIGRATION_GUIDE = "herald's clients/python/README.md, section 'Moving a Channels app to herald'"


class SocketsMovedToHerald(NotImplementedError):
    """Raised by the receiving half of the Channels layer API.

    With :class:`HeraldChannelLayer` the WebSockets are herald's: a page joins a group
    by connecting to ``/ws/{group}`` (or sending a ``subscribe`` frame), so there is no
    channel to add to a group or receive from in Django.
    """


def _moved(method: str) -> SocketsMovedToHerald:
    return SocketsMovedToHerald(
        f"HeraldChannelLayer.{method}() is not available: WebSockets now live in herald, "
        "which adds connections to groups itself (a page connects to ws://<herald>/ws/<group> "
        "or sends a subscribe frame) and delivers group_send events to them. Django only "
        f"sends (group_send). Remove the consumer and its routing; see {MIGRATION_GUIDE}."
    )


class HeraldChannelLayer(BaseChannelLayer):  # type: ignore[misc]  # an untyped base
    """Channels layer whose ``group_send`` publishes through herald.

    CONFIG keys:
        url: herald's base URL (required).
        token: a backend token (``scope: notify``); or
        jwt_secret: herald's HS256 secret, to mint (and renew) backend tokens here;
            with jwt_algorithm, jwt_sub (default ``"django"``), jwt_ttl (300 s),
            jwt_issuer and jwt_audience matching herald's flags.
        timeout: seconds per request (default 10, connect 3).
        retries: tries in total for the safe failures (default 4; 1 = no retry).
        expiry, capacity, channel_capacity: accepted for compatibility, unused.
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        jwt_secret: str | None = None,
        jwt_algorithm: str = "HS256",
        jwt_sub: str = "django",
        jwt_ttl: float = 300,
        jwt_issuer: str | None = None,
        jwt_audience: str | None = None,
        timeout: float | None = None,
        retries: int = 4,
        expiry: int = 60,
        capacity: int = 100,
        channel_capacity: dict[str, int] | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise TypeError(
                f"unknown HeraldChannelLayer CONFIG key(s) {sorted(unknown)}: it takes url and token "
                "(or jwt_secret), timeout and retries; options of other layers (such as channels_redis' "
                "hosts) do not apply"
            )
        if token is not None and jwt_secret is not None:
            raise TypeError("give HeraldChannelLayer either token or jwt_secret, not both")
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        source: TokenSource = token
        if jwt_secret is not None:
            from .tokens import BackendTokens

            source = BackendTokens(
                jwt_secret,
                sub=jwt_sub,
                ttl=jwt_ttl,
                renew_before=min(60.0, jwt_ttl / 2),
                algorithm=jwt_algorithm,
                issuer=jwt_issuer,
                audience=jwt_audience,
            )
        self._make_client: Callable[[], AsyncHerald] = lambda: AsyncHerald(
            url,
            source,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            retry=RetryPolicy(attempts=retries),
        )
        # One client per event loop: async_to_sync() runs each call in a fresh loop,
        # and pooled connections belong to the loop that opened them.
        self._clients: dict[asyncio.AbstractEventLoop, AsyncHerald] = {}

    # -- sending -------------------------------------------------------------------

    async def group_send(self, group: str, message: dict[str, Any]) -> NotifyResult | int:
        """Sends ``message`` to every connection in herald's ``group``.

        Returns herald's reply: a :class:`~herald_client.NotifyResult`, or for a
        ``websocket.close`` message the number of connections closed.
        """
        self.require_valid_group_name(group)
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise TypeError("a Channels message must be a dict with a 'type' string")
        client = self._client()
        if message["type"] == "websocket.close":
            code = message.get("code")
            # Channels' consumer.close() sends no code (or True) for the default, 1000.
            code = 1000 if code is None or code is True else code
            return await client.close_group(group, code, message.get("reason") or "")
        event = require_valid_name("event", message["type"])
        return await client.notify(group, event=event, data=message)

    def require_valid_group_name(self, name: Any) -> bool:
        """herald's rule (Channels' plus ``:``), so ``user:42`` personal groups work."""
        require_valid_name("group", name)
        return True

    # -- receiving is herald's now -------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        raise _moved("group_add")

    async def group_discard(self, group: str, channel: str) -> None:
        raise _moved("group_discard")

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        raise _moved("send")

    async def receive(self, channel: str) -> dict[str, Any]:
        raise _moved("receive")

    async def new_channel(self, prefix: str = "specific.") -> str:
        raise _moved("new_channel")

    async def flush(self) -> None:
        """Nothing to flush: the layer keeps no messages."""

    async def close(self) -> None:
        """Nothing to close: connections are released with their event loop."""

    # -- one HTTP client per event loop ------------------------------------------------

    def _client(self) -> AsyncHerald:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._make_client()
            self._clients[loop] = client
            self._close_with(loop, client)
        return client

    def _close_with(self, loop: asyncio.AbstractEventLoop, client: AsyncHerald) -> None:
        """Closes ``client``'s connections when ``loop`` closes (as channels_redis does),
        so the loops async_to_sync() creates and closes leave no sockets behind."""
        original_close = loop.close

        def close() -> None:
            self._clients.pop(loop, None)
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(client.aclose())
            original_close()

        try:
            loop.close = close  # type: ignore[method-assign]
        except AttributeError:
            pass  # a loop type without instance attributes: the sockets go with the client object
