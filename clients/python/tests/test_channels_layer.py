"""HeraldChannelLayer in-process: what it sends, what it refuses and how it says so."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync

from conftest import closed_with, member, next_frame, without_epoch
from herald_client import BadRequestError, Herald, InvalidNameError
from herald_client.channels import HeraldChannelLayer, SocketsMovedToHerald
from herald_client.tokens import backend_token, browser_token


@pytest.fixture
def layer(herald):
    return HeraldChannelLayer(url=herald.url)


def test_group_send_notifies_the_group_with_the_type_as_event_and_the_message_as_data(herald, layer):
    with member(f"{herald.ws_url}/ws/chat_lobby") as ws:
        result = async_to_sync(layer.group_send)("chat_lobby", {"type": "chat.message", "message": "hi"})
        assert result.recipients == 1
        assert without_epoch(next_frame(ws)) == {
            "type": "notify",
            "group": "chat_lobby",
            "event": "chat.message",
            "offset": 1,
            "data": {"type": "chat.message", "message": "hi"},
        }


def test_layer_from_django_settings_mints_its_own_backend_token(herald_auth):
    from channels.layers import channel_layers, get_channel_layer
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    channel_layers.backends.clear()
    config = {"url": herald_auth.url, "jwt_secret": herald_auth.jwt_secret, "jwt_sub": "site"}
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "herald_client.channels.HeraldChannelLayer", "CONFIG": config}}
    try:
        layer = get_channel_layer()
        assert isinstance(layer, HeraldChannelLayer)
        token = browser_token(herald_auth.jwt_secret, sub="42")
        with member(f"{herald_auth.ws_url}/ws", token) as ws:
            # The personal group: ':' is allowed, unlike in Channels' own layers.
            async_to_sync(layer.group_send)("user:42", {"type": "inbox.new", "count": 3})
            assert next_frame(ws)["data"] == {"type": "inbox.new", "count": 3}
    finally:
        channel_layers.backends.clear()
        del settings.CHANNEL_LAYERS


def test_websocket_close_without_a_code_closes_the_group_with_1000(herald, layer):
    with member(f"{herald.ws_url}/ws/room") as ws:
        assert async_to_sync(layer.group_send)("room", {"type": "websocket.close"}) == 1
        assert closed_with(ws) == (1000, "")


@pytest.mark.parametrize("method", ["group_add", "group_discard", "send", "receive", "new_channel"])
def test_receiving_methods_raise_sockets_moved_to_herald_pointing_to_the_guide(layer, method):
    args = {"group_add": ("g", "ch"), "group_discard": ("g", "ch"), "send": ("ch", {"type": "x"}), "receive": ("ch",), "new_channel": ()}
    with pytest.raises(SocketsMovedToHerald) as raised:
        async_to_sync(getattr(layer, method))(*args[method])
    message = str(raised.value)
    assert f"HeraldChannelLayer.{method}()" in message
    assert "WebSockets now live in herald" in message
    assert "clients/python/README.md" in message
    assert isinstance(raised.value, NotImplementedError)


def test_flush_and_close_do_nothing(herald, layer):
    async_to_sync(layer.flush)()
    async_to_sync(layer.close)()
    with member(f"{herald.ws_url}/ws/g") as ws:
        async_to_sync(layer.group_send)("g", {"type": "still.works"})
        assert next_frame(ws)["event"] == "still.works"


NAMES = ["chat_lobby", "user:42", "chat.lobby-1", "a" * 100, "a" * 101, "no spaces", "é", "a/b", "tab\t", ".", ".."]


@pytest.mark.parametrize("name", NAMES)
def test_the_layer_accepts_exactly_the_group_names_herald_accepts(herald, layer, name):
    with Herald(herald.url) as client:
        try:
            client.group(name)
            herald_accepts = True
        except BadRequestError as e:
            assert e.code == "invalid_group"
            herald_accepts = False
    try:
        async_to_sync(layer.group_send)(name, {"type": "probe"})
        layer_accepts = True
    except InvalidNameError as e:
        assert "1-100 characters of A-Z a-z 0-9 _ - . :" in str(e)
        layer_accepts = False
    assert layer_accepts == herald_accepts


def test_an_invalid_group_name_error_names_the_rule_and_is_a_type_error(layer):
    with pytest.raises(TypeError, match=r"invalid herald group name 'no spaces': a group name must be 1-100 characters"):
        async_to_sync(layer.group_send)("no spaces", {"type": "chat.message"})
    with pytest.raises(InvalidNameError):
        async_to_sync(layer.group_send)("", {"type": "chat.message"})


def test_an_invalid_message_type_names_the_event_rule(layer):
    with pytest.raises(InvalidNameError, match="invalid herald event name 'chat message'"):
        async_to_sync(layer.group_send)("g", {"type": "chat message"})
    with pytest.raises(TypeError, match="'type' string"):
        async_to_sync(layer.group_send)("g", {"message": "no type"})


def test_unknown_config_keys_are_refused_by_name(herald):
    with pytest.raises(TypeError, match="hosts"):
        HeraldChannelLayer(url=herald.url, hosts=[("127.0.0.1", 6379)])
    with pytest.raises(TypeError, match="not both"):
        HeraldChannelLayer(url=herald.url, token="t", jwt_secret="s")


def test_each_event_loop_gets_its_own_connections_closed_with_the_loop(herald, layer):
    for i in range(3):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(layer.group_send("g", {"type": "tick", "i": i}))
        assert len(layer._clients) == 1
        loop.close()
        assert layer._clients == {}
    with Herald(herald.url) as client:
        assert client.group("g").offset == 3


def test_group_send_with_a_static_token(herald_auth):
    layer = HeraldChannelLayer(url=herald_auth.url, token=backend_token(herald_auth.jwt_secret))
    assert async_to_sync(layer.group_send)("g", {"type": "x"}).offset == 1
