"""herald's error replies become HeraldError subclasses with its code and status,
and none of them is retried."""

from __future__ import annotations

import pickle
import time

import pytest

from conftest import member, nothing_arrives
from herald_client import (
    BadRequestError,
    ForbiddenError,
    HeraldAPIError,
    NotFoundError,
    PayloadTooLargeError,
    RetryPolicy,
    UnauthorizedError,
)
from herald_client.tokens import backend_token, browser_token

# Every case below, with retries on: the error must still be raised after one request.
RETRYING = RetryPolicy(attempts=5, backoff=0.01)

BAD_REQUESTS = [
    ("notify", ("bad group!",), {"data": 1}, "invalid_group"),
    ("notify", ("g",), {"event": "no spaces", "data": 1}, "invalid_event"),
    ("notify", ("g",), {"data": 1, "users": [""]}, "invalid_user"),
    ("notify", (), {"groups": [], "data": 1}, "invalid_request"),
    ("notify", (), {"groups": ["a", "a"], "data": 1}, "invalid_request"),
    ("close_group", ("g", 1234), {}, "invalid_close_code"),
    ("close_group", ("g", 4000, "é" * 62), {}, "invalid_close_reason"),
    ("close_group", ("x" * 101,), {}, "invalid_group"),
    ("close_user", ("u", 999), {}, "invalid_close_code"),
    ("group", ("g",), {"limit": 0}, "invalid_query"),
    ("groups", (), {"limit": 1001}, "invalid_query"),
]


@pytest.mark.parametrize(("method", "args", "kwargs", "code"), BAD_REQUESTS, ids=[c[3] + "-" + c[0] for c in BAD_REQUESTS])
def test_bad_requests_raise_bad_request_error_with_heralds_code(herald, make_client, method, args, kwargs, code):
    client = make_client(herald.url, retry=RETRYING)
    before = _requests(herald)

    with pytest.raises(BadRequestError) as raised:
        getattr(client, method)(*args, **kwargs)

    error = raised.value
    assert (error.status, error.code) == (400, code)
    assert error.message  # herald's explanation
    assert error.request_id  # to find the request in herald's log
    assert _requests(herald) == before + 1, "a 400 must not be retried"


def _requests(herald) -> float:
    """API requests herald has answered, from its own metrics (WebSocket upgrades and
    the /metrics scrapes themselves left out)."""
    import httpx

    total = 0.0
    for line in httpx.get(f"{herald.url}/metrics", timeout=5).text.splitlines():
        if line.startswith("herald_http_requests_total{") and not any(
            f'route="{route}' in line for route in ("/metrics", "/ws")
        ):
            total += float(line.split()[-1])
    return total


def test_missing_token_is_unauthorized(herald_auth, make_client):
    client = make_client(herald_auth.url, retry=RETRYING)
    with pytest.raises(UnauthorizedError) as raised:
        client.notify("g", data=1)
    assert (raised.value.status, raised.value.code) == (401, "unauthorized")
    assert _requests(herald_auth) == 1


def test_token_signed_with_another_secret_is_unauthorized(herald_auth, make_client):
    client = make_client(herald_auth.url, backend_token("not herald's secret, but as long as one"))
    with pytest.raises(UnauthorizedError):
        client.groups()


def test_expired_token_is_unauthorized(herald_auth, make_client):
    expired = backend_token(herald_auth.jwt_secret, ttl=60, now=time.time() - 3600)
    client = make_client(herald_auth.url, expired)
    with pytest.raises(UnauthorizedError) as raised:
        client.close_group("g")
    assert "exp" in raised.value.message.lower()


def test_browser_token_without_notify_scope_is_forbidden(herald_auth, make_client):
    key = herald_auth.jwt_secret
    client = make_client(herald_auth.url, browser_token(key, sub="alice", groups=["*"]), retry=RETRYING)
    with member(f"{herald_auth.ws_url}/ws/g", browser_token(key, sub="bob", groups=["g"])) as ws:
        with pytest.raises(ForbiddenError) as raised:
            client.notify("g", data="not allowed")
        assert (raised.value.status, raised.value.code) == (403, "forbidden")
        assert nothing_arrives(ws)


def test_base_url_with_a_wrong_path_is_not_found(herald, make_client):
    client = make_client(herald.url + "/herald/", retry=RETRYING)
    with pytest.raises(NotFoundError) as raised:
        client.groups()
    assert (raised.value.status, raised.value.code) == (404, "not_found")


def test_body_over_max_body_is_payload_too_large_and_nothing_is_delivered(herald, make_client):
    client = make_client(herald.url, retry=RETRYING)
    with member(f"{herald.ws_url}/ws/big") as ws:
        with pytest.raises(PayloadTooLargeError) as raised:
            client.notify("big", data="x" * 70_000)
        assert (raised.value.status, raised.value.code) == (413, "payload_too_large")
        assert nothing_arrives(ws)
    assert _requests(herald) == 1


def test_every_api_error_is_a_herald_api_error_with_a_readable_str_that_pickles(herald, make_client):
    client = make_client(herald.url)
    with pytest.raises(HeraldAPIError) as raised:
        client.notify("bad group!", data=1)
    assert str(raised.value).startswith("400 invalid_group: ")
    copy = pickle.loads(pickle.dumps(raised.value))
    assert type(copy) is BadRequestError
    assert (copy.status, copy.code, copy.request_id, str(copy)) == (400, "invalid_group", raised.value.request_id, str(raised.value))


def test_notify_needs_exactly_one_of_group_and_groups(herald, make_client):
    client = make_client(herald.url)
    with pytest.raises(TypeError, match="exactly one"):
        client.notify(data=1)
    with pytest.raises(TypeError, match="exactly one"):
        client.notify("a", groups=["b"], data=1)
    with pytest.raises(TypeError, match="not a single string"):
        client.notify(groups="ab", data=1)
