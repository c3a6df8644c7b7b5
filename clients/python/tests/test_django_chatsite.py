"""The Channels tutorial's chatsite, moved to herald, served by Django's own server:
its views group_send through HeraldChannelLayer and a WebSocket connected to herald
(as room.html connects) receives the events."""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import closed_with, member, next_frame
from herald_process import HeraldProcess, free_port

CHATSITE = Path(__file__).parent / "chatsite"


class Site:
    """The chatsite, running as ``manage.py runserver`` on a free port."""

    def __init__(self, herald) -> None:
        port = free_port()
        env = dict(os.environ, HERALD_URL=herald.url, HERALD_JWT_SECRET=herald.jwt_secret, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=CHATSITE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=10)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"runserver exited:\n{self.proc.stdout.read()}")  # type: ignore[union-attr]
            try:
                self.http.get("/chat/")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def open_room(self, room: str) -> dict:
        """GET the room page; the herald settings room.html connects with."""
        page = self.http.get(f"/chat/{room}/")
        assert page.status_code == 200
        found = re.search(r'<script id="herald" type="application/json">(.*?)</script>', page.text)
        assert found, "room.html has no herald settings"
        self.csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        return json.loads(html.unescape(found.group(1)))

    def post(self, path: str, body: dict | None = None) -> httpx.Response:
        return self.http.post(path, json=body or {}, headers={"X-CSRFToken": self.csrf})

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """One herald (auth on) and one chatsite for the module: starting Django takes a second."""
    herald = HeraldProcess(jwt_secret=secrets.token_hex(32))
    try:
        running = Site(herald)
        yield running
        running.stop()
    finally:
        herald.stop()


def test_a_message_posted_to_the_view_reaches_the_rooms_websocket_through_herald(site):
    herald_settings = site.open_room("lobby")
    assert herald_settings["url"].endswith("/ws/chat_lobby")

    with member(herald_settings["url"], herald_settings["token"]) as ws:
        sent = site.post("/chat/lobby/messages/", {"message": "hi"})

        assert sent.status_code == 202
        frame = next_frame(ws)
        assert frame["group"] == "chat_lobby"
        assert frame["event"] == "chat.message"
        assert frame["data"] == {"type": "chat.message", "message": "hi"}

        # async_to_sync runs each call in a new event loop; the layer must keep working.
        site.post("/chat/lobby/messages/", {"message": "again"})
        assert next_frame(ws)["data"]["message"] == "again"


def test_websocket_close_4000_closes_the_herald_group_with_4000(site):
    herald_settings = site.open_room("lobby")
    with member(herald_settings["url"], herald_settings["token"]) as ws:
        assert site.post("/chat/lobby/close/").status_code == 200
        assert closed_with(ws) == (4000, "room closed")


def test_a_room_name_herald_refuses_gets_an_error_naming_the_rule(site):
    site.open_room("lobby")
    refused = site.post("/chat/no%20spaces/messages/", {"message": "hi"})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert "'chat_no spaces'" in error
    assert "1-100 characters of A-Z a-z 0-9 _ - . :" in error
