"""The tutorial's views, plus the two that replace ChatConsumer.receive()."""

import json
import secrets

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from herald_client import InvalidNameError
from herald_client.tokens import browser_token


def group_name(room_name):
    return f"chat_{room_name}"


def index(request):
    return render(request, "chat/index.html")


def room(request, room_name):
    # A real site would use request.user.pk; the example has no user database.
    user = request.COOKIES.get("chat_user") or secrets.token_hex(4)
    herald = {
        "url": f"{settings.HERALD_PUBLIC_WS_URL}/ws/{group_name(room_name)}",
        "token": browser_token(settings.HERALD_JWT_SECRET, sub=user, groups=[group_name(room_name)]),
    }
    response = render(request, "chat/room.html", {"room_name": room_name, "herald": herald})
    response.set_cookie("chat_user", user, samesite="Lax")
    return response


@require_POST
def send_message(request, room_name):
    """What ChatConsumer.receive() did: broadcast the posted message to the room."""
    try:
        message = json.loads(request.body)["message"]
    except (ValueError, KeyError, TypeError):
        return HttpResponseBadRequest("expected {\"message\": ...}")
    try:
        async_to_sync(get_channel_layer().group_send)(
            group_name(room_name), {"type": "chat.message", "message": message}
        )
    except InvalidNameError as e:
        return JsonResponse({"error": str(e)}, status=400)
    return JsonResponse({"sent": True}, status=202)


@require_POST
def close_room(request, room_name):
    """A moderator closes the room: every socket in it gets close code 4000."""
    async_to_sync(get_channel_layer().group_send)(
        group_name(room_name), {"type": "websocket.close", "code": 4000, "reason": "room closed"}
    )
    return JsonResponse({"closed": True})
