"""Typed replies of herald's HTTP API.

Unknown fields in herald's replies are ignored, so a newer herald that adds a field
does not break an older client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GroupDelivery:
    """What one target group got from a notify."""

    group: str
    #: The offset the notification got in this group.
    offset: int
    #: Members of this group on the answering node it was queued for.
    recipients: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> GroupDelivery:
        return cls(group=body["group"], offset=body["offset"], recipients=body["recipients"])


@dataclass(frozen=True)
class NotifyResult:
    """herald's ``202`` reply to a notify.

    For a ``group`` notify, ``offset`` is the group's new offset and ``groups`` is
    empty; for a ``groups`` notify, ``offset`` is ``None`` and ``groups`` has one
    entry per target group, in request order.
    """

    #: Unique id of the notify request (32 hex digits).
    id: str
    #: Members on the answering node the notification was queued for, all groups summed.
    recipients: int
    offset: int | None = None
    groups: tuple[GroupDelivery, ...] = ()

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> NotifyResult:
        return cls(
            id=body["id"],
            recipients=body["recipients"],
            offset=body.get("offset"),
            groups=tuple(GroupDelivery.from_json(g) for g in body.get("groups") or ()),
        )


@dataclass(frozen=True)
class GroupInfo:
    """``GET /groups/{group}``: one group on the answering node."""

    group: str
    #: Connections on this node that are members.
    subscribers: int
    #: The offset of the group's latest notification (0: none yet).
    offset: int
    #: Distinct user ids (token ``sub``) connected, sorted; empty with auth off.
    users: tuple[str, ...]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> GroupInfo:
        return cls(
            group=body["group"],
            subscribers=body["subscribers"],
            offset=body["offset"],
            users=tuple(body.get("users") or ()),
        )


@dataclass(frozen=True)
class GroupSummary:
    """One entry of ``GET /groups``."""

    group: str
    subscribers: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> GroupSummary:
        return cls(group=body["group"], subscribers=body["subscribers"])


@dataclass(frozen=True)
class GroupList:
    """``GET /groups``: groups with members on the answering node, sorted by name."""

    groups: tuple[GroupSummary, ...]
    #: How many groups have members (may exceed ``len(groups)`` when ``limit`` cut it).
    total: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> GroupList:
        return cls(groups=tuple(GroupSummary.from_json(g) for g in body["groups"]), total=body["total"])


@dataclass(frozen=True)
class History:
    """``GET /groups/{group}/history``: the group's kept notifications after ``since``."""

    group: str
    #: The history's epoch: offsets are comparable only within one epoch.
    epoch: str
    #: The group's latest offset.
    offset: int
    #: The kept notify frames (as clients received them), oldest first.
    notifications: tuple[dict[str, Any], ...]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> History:
        return cls(
            group=body["group"],
            epoch=body["epoch"],
            offset=body["offset"],
            notifications=tuple(body["notifications"]),
        )
