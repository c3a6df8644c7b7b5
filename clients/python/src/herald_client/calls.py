"""What each API call sends and how its reply is read, shared by both clients.

The sync and async clients differ only in how they do I/O; everything herald-specific
(paths, bodies, reply types) is described here once, as :class:`Call` values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from .models import GroupInfo, GroupList, History, NotifyResult

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request to herald and the parser of its successful reply."""

    method: str
    path: str
    parse: Callable[[Any], T]
    #: The JSON body, or ``None`` for a request without a body.
    body: dict[str, Any] | None = None
    params: dict[str, int] | None = None


def path_segment(name: str) -> str:
    """Percent-encodes a group name or user id for one URL path segment.

    ``.`` and ``..`` are valid names but would be removed as dot segments by URL
    normalisation, so they are written ``%2E`` / ``%2E%2E`` (herald decodes them).
    """
    if name and set(name) == {"."} and len(name) <= 2:
        return "%2E" * len(name)
    return quote(name, safe="")


def _limit(limit: int | None) -> dict[str, int] | None:
    return None if limit is None else {"limit": limit}


def notify(
    group: str | None,
    groups: Sequence[str] | None,
    event: str,
    data: Any,
    users: Sequence[str] | None,
) -> Call[NotifyResult]:
    """``POST /notify`` to one group or to several."""
    if (group is None) == (groups is None):
        raise TypeError("notify() needs exactly one of group=... or groups=[...]")
    if isinstance(groups, str) or isinstance(users, str):
        raise TypeError("groups and users must be sequences of strings, not a single string")
    body: dict[str, Any] = {"event": event, "data": data}
    if group is not None:
        body["group"] = group
    else:
        body["groups"] = list(groups or ())
    if users is not None:
        body["users"] = list(users)
    return Call("POST", "/notify", NotifyResult.from_json, body=body)


def _batch_results(body: Any) -> tuple[NotifyResult, ...]:
    return tuple(NotifyResult.from_json(r) for r in body["results"])


def notify_batch(items: Sequence[Mapping[str, Any]]) -> Call[tuple[NotifyResult, ...]]:
    """``POST /notify/batch``: each item takes :func:`notify`'s keyword arguments
    (``group`` or ``groups``, ``event``, ``data``, ``users``), so an item is built exactly
    like a single notify body; herald publishes all of them in order, or none."""
    if isinstance(items, Mapping):
        raise TypeError("notify_batch() takes a sequence of notify items, not one item")
    bodies = []
    for index, item in enumerate(items):
        unknown = set(item) - {"group", "groups", "event", "data", "users"}
        if unknown or "data" not in item:
            raise TypeError(
                f"notify_batch() item {index} must have `data` and only group, groups, "
                f"event, data, users; got {sorted(item)}"
            )
        one = notify(
            item.get("group"), item.get("groups"), item.get("event", "message"), item["data"], item.get("users")
        )
        bodies.append(one.body)
    return Call("POST", "/notify/batch", _batch_results, body={"notifications": bodies})


def _closed(body: Any) -> int:
    return int(body["closed"])


def close_group(group: str, code: int, reason: str) -> Call[int]:
    """``POST /groups/{group}/close``; the reply is how many connections were closed."""
    return Call(
        "POST",
        f"/groups/{path_segment(group)}/close",
        _closed,
        body={"code": code, "reason": reason},
    )


def close_user(user: str, code: int, reason: str) -> Call[int]:
    """``POST /users/{user}/close``; the reply is how many connections were closed."""
    return Call(
        "POST",
        f"/users/{path_segment(user)}/close",
        _closed,
        body={"code": code, "reason": reason},
    )


def group(name: str, limit: int | None) -> Call[GroupInfo]:
    """``GET /groups/{group}``."""
    return Call("GET", f"/groups/{path_segment(name)}", GroupInfo.from_json, params=_limit(limit))


def history(name: str, since: int | None, limit: int | None) -> Call[History]:
    """``GET /groups/{group}/history``."""
    params = {k: v for k, v in (("since", since), ("limit", limit)) if v is not None}
    return Call("GET", f"/groups/{path_segment(name)}/history", History.from_json, params=params or None)


def groups(limit: int | None) -> Call[GroupList]:
    """``GET /groups``."""
    return Call("GET", "/groups", GroupList.from_json, params=_limit(limit))
