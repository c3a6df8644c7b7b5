"""notify_batch and history against a real herald."""

from __future__ import annotations

import pytest
from conftest import member, next_frame, nothing_arrives
from herald_client import BadRequestError, ForbiddenError, GroupDelivery
from herald_client.tokens import backend_token, browser_token


def test_notify_batch_publishes_every_item_in_order(herald, make_client):
    client = make_client(herald.url)
    with member(f"{herald.ws_url}/ws/a") as a, member(f"{herald.ws_url}/ws/b") as b:
        results = client.notify_batch(
            [
                {"group": "a", "event": "first", "data": 1},
                {"groups": ["a", "b"], "data": 2},
                {"group": "a", "data": 3},
            ]
        )

        assert [r.offset for r in results] == [1, None, 3]
        assert results[1].groups == (
            GroupDelivery("a", offset=2, recipients=1),
            GroupDelivery("b", offset=1, recipients=1),
        )
        frames = [next_frame(a) for _ in range(3)]
        assert [(f["offset"], f["event"], f["data"]) for f in frames] == [
            (1, "first", 1),
            (2, "message", 2),
            (3, "message", 3),
        ]
        assert next_frame(b)["data"] == 2


def test_a_bad_batch_item_refuses_the_whole_batch_naming_its_index(herald, make_client):
    client = make_client(herald.url)
    with member(f"{herald.ws_url}/ws/a") as a:
        with pytest.raises(BadRequestError) as refused:
            client.notify_batch([{"group": "a", "data": 1}, {"group": "no spaces", "data": 2}])
        assert refused.value.status == 400
        assert refused.value.message.startswith("notifications[1]: ")
        assert nothing_arrives(a)
    assert client.group("a").offset == 0


def test_notify_batch_refuses_malformed_items_before_sending(make_client, herald):
    client = make_client(herald.url)
    with pytest.raises(TypeError, match="item 0"):
        client.notify_batch([{"group": "a"}])
    with pytest.raises(TypeError):
        client.notify_batch({"group": "a", "data": 1})


def test_history_returns_the_kept_notifications_after_since(herald, make_client):
    client = make_client(herald.url)
    for n in range(1, 6):
        client.notify("h", event="e", data=n)

    history = client.history("h", since=2)
    assert history.group == "h"
    assert history.offset == 5
    assert [f["offset"] for f in history.notifications] == [3, 4, 5]
    assert [f["data"] for f in history.notifications] == [3, 4, 5]
    assert all(f["epoch"] == history.epoch for f in history.notifications)

    assert [f["offset"] for f in client.history("h", limit=2).notifications] == [1, 2]


def test_history_needs_the_notify_scope(herald_auth, make_client):
    key = herald_auth.jwt_secret
    backend = make_client(herald_auth.url, backend_token(key))
    backend.notify("room:1", data="x")
    assert len(backend.history("room:1").notifications) == 1

    browser = make_client(herald_auth.url, browser_token(key, sub="u", groups=["room:*"]))
    with pytest.raises(ForbiddenError) as refused:
        browser.history("room:1")
    assert refused.value.status == 403
