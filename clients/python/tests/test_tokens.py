"""herald_client.tokens: the tokens it mints are the ones herald accepts and enforces."""

from __future__ import annotations

import json
import secrets

import jwt
import pytest
from websockets.exceptions import InvalidStatus

from conftest import member, next_frame
from herald_client import Herald, UnauthorizedError
from herald_client.tokens import BackendTokens, backend_token, browser_token
from herald_process import HeraldProcess

KEY = "unit-test-secret-of-32-bytes-min"


def test_backend_token_carries_the_notify_scope_sub_and_expiry():
    claims = jwt.decode(backend_token(KEY, sub="billing", ttl=120, now=1_000), KEY, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sub": "billing", "scope": "notify", "iat": 1_000, "exp": 1_120}


def test_browser_token_carries_sub_groups_and_publish():
    token = browser_token(KEY, sub="42", groups=["room:*", "news"], publish=["room:*"], now=5, ttl=10)
    claims = jwt.decode(token, KEY, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sub": "42", "groups": ["room:*", "news"], "publish": ["room:*"], "iat": 5, "exp": 15}


def test_invalid_sub_and_single_string_patterns_are_refused():
    with pytest.raises(ValueError, match="1-256 bytes"):
        browser_token(KEY, sub="")
    with pytest.raises(ValueError, match="1-256 bytes"):
        backend_token(KEY, sub="line\nbreak")
    with pytest.raises(TypeError, match="list of patterns"):
        browser_token(KEY, sub="1", groups="room:*")


def test_browser_token_groups_are_enforced_by_herald(herald_auth):
    token = browser_token(herald_auth.jwt_secret, sub="7", groups=["room:*"])
    with member(f"{herald_auth.ws_url}/ws/room:1", token):
        pass
    with pytest.raises(InvalidStatus) as refused:
        member(f"{herald_auth.ws_url}/ws/admin", token)
    assert refused.value.response.status_code == 403


def test_browser_token_publish_patterns_allow_publish_frames():
    key = secrets.token_hex(16)
    process = HeraldProcess("--client-publish", jwt_secret=key)
    try:
        token = browser_token(key, sub="7", groups=["room:*", "news"], publish=["room:*"])
        with member(f"{process.ws_url}/ws/room:1", token) as ws:
            ws.send(json.dumps({"type": "publish", "group": "room:1", "event": "chat.message", "data": "hi"}))
            assert next_frame(ws)["data"] == "hi"
            ws.send(json.dumps({"type": "subscribe", "group": "news"}))
            assert next_frame(ws)["type"] == "subscribed"
            ws.send(json.dumps({"type": "publish", "group": "news", "data": "no"}))
            assert next_frame(ws)["error"] == "forbidden"
    finally:
        process.stop()


def test_issuer_and_audience_are_set_when_herald_requires_them():
    key = secrets.token_hex(16)
    process = HeraldProcess("--jwt-issuer", "https://app.example", "--jwt-audience", "herald", jwt_secret=key)
    try:
        good = backend_token(key, issuer="https://app.example", audience="herald")
        with Herald(process.url, good) as client:
            assert client.groups().total == 0
        with Herald(process.url, backend_token(key)) as client, pytest.raises(UnauthorizedError):
            client.groups()
    finally:
        process.stop()


def test_backend_tokens_reuses_its_token_until_renewal_time():
    now = [1_000.0]
    source = BackendTokens(KEY, ttl=300, renew_before=60, clock=lambda: now[0])
    first = source()
    now[0] += 239
    assert source() == first
    now[0] += 1  # 60 s before exp
    renewed = source()
    assert renewed != first
    assert jwt.decode(renewed, KEY, algorithms=["HS256"], options={"verify_exp": False})["exp"] == 1_540


def test_backend_tokens_work_as_a_client_token_source(herald_auth):
    with Herald(herald_auth.url, BackendTokens(herald_auth.jwt_secret, sub="svc")) as client:
        assert client.notify("g", data=1).offset == 1
