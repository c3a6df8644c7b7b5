"""Every client call against a real herald, with WebSocket members checking the effect."""

from __future__ import annotations

from conftest import closed_with, member, next_frame, nothing_arrives, without_epoch
from herald_client import GroupDelivery, GroupInfo, GroupSummary
from herald_client.tokens import backend_token, browser_token


def test_notify_reaches_every_member_of_the_group_with_the_event_and_data(herald, make_client):
    client = make_client(herald.url)
    with member(f"{herald.ws_url}/ws/room:1") as a, member(f"{herald.ws_url}/ws/room:1") as b:
        result = client.notify("room:1", event="chat.message", data={"text": "hi", "n": [1, 2]})

        assert result.offset == 1
        assert result.recipients == 2
        assert len(result.id) == 32
        expected = {
            "type": "notify",
            "group": "room:1",
            "event": "chat.message",
            "offset": 1,
            "data": {"text": "hi", "n": [1, 2]},
        }
        assert without_epoch(next_frame(a)) == expected
        assert without_epoch(next_frame(b)) == expected


def test_notify_defaults_the_event_to_message_and_forwards_null_data(herald, make_client):
    client = make_client(herald.url)
    with member(f"{herald.ws_url}/ws/news") as ws:
        client.notify("news", data=None)
        frame = next_frame(ws)
    assert frame["event"] == "message"
    assert frame["data"] is None


def test_notify_to_several_groups_reports_each_group(herald, make_client):
    client = make_client(herald.url)
    with member(f"{herald.ws_url}/ws/a") as a, member(f"{herald.ws_url}/ws/b") as b:
        client.notify("a", data=0)  # a is now at offset 1
        next_frame(a)

        result = client.notify(groups=["a", "b", "c"], event="alert", data="x")

        assert result.offset is None
        assert result.recipients == 2
        assert result.groups == (
            GroupDelivery("a", offset=2, recipients=1),
            GroupDelivery("b", offset=1, recipients=1),
            GroupDelivery("c", offset=1, recipients=0),
        )
        assert next_frame(a)["offset"] == 2
        assert without_epoch(next_frame(b)) == {"type": "notify", "group": "b", "event": "alert", "offset": 1, "data": "x"}


def test_notify_with_users_reaches_only_those_users(herald_auth, make_client):
    key = herald_auth.jwt_secret
    client = make_client(herald_auth.url, backend_token(key))
    alice = browser_token(key, sub="alice", groups=["room:*"])
    bob = browser_token(key, sub="bob", groups=["room:*"])
    with member(f"{herald_auth.ws_url}/ws/room:7", alice) as a, member(f"{herald_auth.ws_url}/ws/room:7", bob) as b:
        result = client.notify("room:7", event="mention", data={"to": "alice"}, users=["alice"])

        assert result.recipients == 1
        assert next_frame(a)["data"] == {"to": "alice"}
        assert nothing_arrives(b)


def test_notify_to_a_personal_group_reaches_every_tab_of_that_user(herald_auth, make_client):
    key = herald_auth.jwt_secret
    client = make_client(herald_auth.url, backend_token(key))
    token = browser_token(key, sub="42")
    with member(f"{herald_auth.ws_url}/ws", token) as tab1, member(f"{herald_auth.ws_url}/ws", token) as tab2:
        result = client.notify("user:42", event="inbox", data=1)

        assert result.recipients == 2
        assert next_frame(tab1)["group"] == "user:42"
        assert next_frame(tab2)["group"] == "user:42"


def test_close_group_closes_every_member_with_the_code_and_reason(herald, make_client):
    client = make_client(herald.url)
    with member(f"{herald.ws_url}/ws/room:2") as a, member(f"{herald.ws_url}/ws/room:2") as b:
        closed = client.close_group("room:2", 4000, "maintenance")

        assert closed == 2
        assert closed_with(a) == (4000, "maintenance")
        assert closed_with(b) == (4000, "maintenance")
    assert client.group("room:2").subscribers == 0


def test_close_group_defaults_to_1000_and_counts_zero_for_an_empty_group(herald, make_client):
    client = make_client(herald.url)
    assert client.close_group("nobody-here") == 0
    with member(f"{herald.ws_url}/ws/g") as ws:
        assert client.close_group("g") == 1
        assert closed_with(ws) == (1000, "")


def test_close_user_closes_all_connections_of_that_user_only(herald_auth, make_client):
    key = herald_auth.jwt_secret
    client = make_client(herald_auth.url, backend_token(key))
    banned = browser_token(key, sub="mallory", groups=["*"])
    other = browser_token(key, sub="carol", groups=["*"])
    with (
        member(f"{herald_auth.ws_url}/ws/x", banned) as tab1,
        member(f"{herald_auth.ws_url}/ws/y", banned) as tab2,
        member(f"{herald_auth.ws_url}/ws/x", other) as bystander,
    ):
        assert client.close_user("mallory", 4403, "banned") == 2
        assert closed_with(tab1) == (4403, "banned")
        assert closed_with(tab2) == (4403, "banned")
        client.notify("x", data="still here")
        assert next_frame(bystander)["data"] == "still here"


def test_close_user_encodes_user_ids_with_slashes_and_dots(herald_auth, make_client):
    key = herald_auth.jwt_secret
    client = make_client(herald_auth.url, backend_token(key))
    for sub in ["auth0|a/b", "..", "é x"]:
        with member(f"{herald_auth.ws_url}/ws", browser_token(key, sub=sub)) as ws:
            assert client.close_user(sub, 4000) == 1
            assert closed_with(ws)[0] == 4000


def test_group_reports_subscribers_offset_and_sorted_users(herald_auth, make_client):
    key = herald_auth.jwt_secret
    client = make_client(herald_auth.url, backend_token(key))
    with (
        member(f"{herald_auth.ws_url}/ws/room:3", browser_token(key, sub="zoe", groups=["room:3"])),
        member(f"{herald_auth.ws_url}/ws/room:3", browser_token(key, sub="adam", groups=["room:3"])),
    ):
        client.notify("room:3", data=1)
        client.notify("room:3", data=2)

        assert client.group("room:3") == GroupInfo("room:3", subscribers=2, offset=2, users=("adam", "zoe"))
        assert client.group("room:3", limit=1).users == ("adam",)


def test_group_answers_for_a_group_never_used_and_for_dot_names(herald, make_client):
    client = make_client(herald.url)
    assert client.group("never-used") == GroupInfo("never-used", 0, 0, ())
    client.notify("..", data=1)
    assert client.group("..").offset == 1
    assert client.group(".") == GroupInfo(".", 0, 0, ())


def test_groups_lists_groups_with_members_sorted_with_total(herald, make_client):
    client = make_client(herald.url)
    assert client.groups().total == 0
    with (
        member(f"{herald.ws_url}/ws/b"),
        member(f"{herald.ws_url}/ws/a"),
        member(f"{herald.ws_url}/ws/a"),
    ):
        listing = client.groups()
        assert listing.groups == (GroupSummary("a", 2), GroupSummary("b", 1))
        assert listing.total == 2
        limited = client.groups(limit=1)
        assert limited.groups == (GroupSummary("a", 2),)
        assert limited.total == 2


def test_one_client_serves_many_calls_and_closes(herald, make_client):
    client = make_client(herald.url)
    with member(f"{herald.ws_url}/ws/many") as ws:
        for i in range(50):
            client.notify("many", data=i)
        assert [next_frame(ws)["data"] for _ in range(50)] == list(range(50))
