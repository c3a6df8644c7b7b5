"""Retries happen only where nothing can have been published: a refused connection
(real: a herald that is not running yet, or stopped) and ``503 unavailable`` (scripted
in front of a real herald, which with its memory broker cannot produce one)."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import member, next_frame, nothing_arrives
from herald_client import (
    NO_RETRY,
    HeraldConnectionError,
    HeraldTimeoutError,
    RetryPolicy,
    ServerError,
    UnavailableError,
)
from herald_process import HeraldProcess, free_port
from scripted_proxy import Reply, ScriptedProxy, herald_error

FAST = RetryPolicy(attempts=4, backoff=0.05, max_backoff=0.1)


@pytest.fixture
def proxy_for(herald):
    """``proxy_for(script)``: a ScriptedProxy in front of the test's herald."""
    proxies: list[ScriptedProxy] = []

    def make(script: list[Reply]) -> ScriptedProxy:
        proxies.append(ScriptedProxy(herald.url, script))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.stop()


def test_refused_connection_is_retried_until_herald_is_up(make_client):
    port = free_port()
    client = make_client(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=40, backoff=0.05, max_backoff=0.2))
    started: list[HeraldProcess] = []
    starter = threading.Timer(0.5, lambda: started.append(HeraldProcess(port=port)))
    starter.start()
    try:
        result = client.notify("boot", data="after start")
        # Published exactly once: the refused tries never reached herald.
        assert result.offset == 1
        assert client.group("boot").offset == 1
    finally:
        starter.join()
        for process in started:
            process.stop()


def test_refused_connection_is_raised_when_retries_are_used_up(make_client):
    client = make_client(f"http://127.0.0.1:{free_port()}", retry=FAST)
    with pytest.raises(HeraldConnectionError, match="cannot connect to herald"):
        client.notify("g", data=1)


def test_a_stopped_herald_refuses_and_no_retry_raises_at_once(make_client):
    process = HeraldProcess()
    client = make_client(process.url, retry=NO_RETRY)
    assert client.groups().total == 0
    process.stop()
    with pytest.raises(HeraldConnectionError):
        client.groups()


def test_503_unavailable_is_retried_after_retry_after_and_delivered_once(herald, make_client, proxy_for):
    proxy = proxy_for([herald_error(503, "unavailable", **{"Retry-After": "1"})])
    client = make_client(proxy.url, retry=FAST)
    with member(f"{herald.ws_url}/ws/room") as ws:
        started = time.monotonic()
        result = client.notify("room", data="once")
        waited = time.monotonic() - started

        assert waited >= 1.0, "Retry-After: 1 must be honoured"
        assert len(proxy.requests) == 2
        assert result.offset == 1
        assert next_frame(ws)["data"] == "once"
        assert nothing_arrives(ws)


def test_503_unavailable_without_retry_after_backs_off_and_raises_after_the_last_try(herald, make_client, proxy_for):
    proxy = proxy_for([herald_error(503, "unavailable")] * 4)
    client = make_client(proxy.url, retry=FAST)
    with pytest.raises(UnavailableError) as raised:
        client.notify("room", data=1)
    assert (raised.value.status, raised.value.code) == (503, "unavailable")
    assert len(proxy.requests) == 4
    assert client.group("room").offset == 0  # nothing reached herald


def test_retry_after_beyond_the_limit_is_raised_at_once_with_its_value(herald, make_client, proxy_for):
    proxy = proxy_for([herald_error(503, "unavailable", **{"Retry-After": "120"})])
    client = make_client(proxy.url, retry=FAST)
    with pytest.raises(UnavailableError) as raised:
        client.notify("room", data=1)
    assert raised.value.retry_after == 120
    assert len(proxy.requests) == 1


@pytest.mark.parametrize("code", ["shutting_down", "too_many_connections"])
def test_other_503s_are_not_retried(herald, make_client, proxy_for, code):
    proxy = proxy_for([herald_error(503, code, **{"Retry-After": "0"})])
    client = make_client(proxy.url, retry=FAST)
    with pytest.raises(UnavailableError) as raised:
        client.notify("room", data=1)
    assert raised.value.code == code
    assert len(proxy.requests) == 1


def test_500_is_not_retried(herald, make_client, proxy_for):
    proxy = proxy_for([herald_error(500, "internal")])
    client = make_client(proxy.url, retry=FAST)
    with pytest.raises(ServerError) as raised:
        client.notify("room", data=1)
    assert raised.value.code == "internal"
    assert len(proxy.requests) == 1


def test_a_proxy_error_page_is_a_server_error_without_a_code(herald, make_client, proxy_for):
    proxy = proxy_for([Reply(502, "<html>Bad Gateway</html>", content_type="text/html")])
    client = make_client(proxy.url, retry=FAST)
    with pytest.raises(ServerError) as raised:
        client.groups()
    assert (raised.value.status, raised.value.code) == (502, None)
    assert "Bad Gateway" in raised.value.message


def test_a_read_timeout_is_not_retried(herald, make_client, proxy_for):
    # The request was sent and may have been published: retrying could deliver twice.
    proxy = proxy_for([Reply(202, "{}", stall=1.0)])
    client = make_client(proxy.url, retry=FAST, timeout=0.3)
    with pytest.raises(HeraldTimeoutError):
        client.notify("room", data=1)
    assert len(proxy.requests) == 1


def test_calls_reuse_one_pooled_connection(herald, make_client, proxy_for):
    proxy = proxy_for([])
    client = make_client(proxy.url)
    for i in range(5):
        client.notify("room", data=i)
    client.groups()
    assert len(proxy.requests) == 6
    assert len(proxy.connections()) == 1
