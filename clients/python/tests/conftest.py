"""Fixtures: a real herald per test, both clients behind one interface, WebSocket members."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from herald_client import AsyncHerald, Herald
from herald_process import HeraldProcess


@pytest.fixture
def herald() -> Iterator[HeraldProcess]:
    """A herald with authentication off."""
    process = HeraldProcess()
    yield process
    process.stop()


@pytest.fixture
def herald_auth() -> Iterator[HeraldProcess]:
    """A herald with authentication on (a random HS256 secret in ``.jwt_secret``)."""
    process = HeraldProcess(jwt_secret=secrets.token_hex(32))
    yield process
    process.stop()


class SyncView:
    """Calls ``AsyncHerald`` methods to completion on a private loop, so one test body
    checks both clients (every async call is still a real request on a real loop)."""

    def __init__(self, client: AsyncHerald, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(method(*args, **kwargs))

        return call


@pytest.fixture(params=["sync", "async"])
def make_client(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``make_client(url, token=None, **options)``: a ``Herald``, or an ``AsyncHerald``
    seen through :class:`SyncView`; the test runs once with each."""
    loop = asyncio.new_event_loop()
    opened: list[Any] = []

    def make(url: str, token: Any = None, **options: Any) -> Any:
        if request.param == "sync":
            client: Any = Herald(url, token, **options)
        else:
            client = SyncView(AsyncHerald(url, token, **options), loop)
        opened.append(client)
        return client

    yield make
    for client in opened:
        if isinstance(client, SyncView):
            client.aclose()
        else:
            client.close()
    loop.close()


def member(url: str, token: str | None = None) -> ClientConnection:
    """A WebSocket connection to herald (``url`` like ``ws://addr/ws/room``), sending
    ``token`` as the ``herald.bearer.<token>`` subprotocol as a browser would."""
    protocols = [f"herald.bearer.{token}"] if token else None
    return connect(url, subprotocols=protocols, open_timeout=5, close_timeout=2)  # type: ignore[arg-type]


def next_frame(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    """The next JSON frame herald sent."""
    return json.loads(ws.recv(timeout=timeout))


def without_epoch(frame: dict[str, Any]) -> dict[str, Any]:
    """A notify frame minus its ``epoch``, which is random per group history (checked to
    be there, then left out so the rest can be compared whole)."""
    epoch = frame.pop("epoch", None)
    assert isinstance(epoch, str) and epoch, f"notify frame without an epoch: {frame}"
    return frame


def closed_with(ws: ClientConnection, timeout: float = 5) -> tuple[int, str]:
    """Reads until herald closes the connection; its close code and reason."""
    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "herald dropped the connection without a close frame"
        return closed.rcvd.code, closed.rcvd.reason


def nothing_arrives(ws: ClientConnection, within: float = 0.3) -> bool:
    """True when no frame arrives within ``within`` seconds."""
    try:
        ws.recv(timeout=within)
    except TimeoutError:
        return True
    return False
