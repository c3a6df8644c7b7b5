"""herald's naming rule for groups and events, checked before a request is sent.

herald is the authority (it answers ``400 invalid_group`` / ``invalid_event``); this
copy exists so the Channels layer can fail with a message that names the rule
instead of an HTTP round trip, the way Channels' own layers do.
"""

from __future__ import annotations

import re

#: The rule in words, quoted in every error about a name.
NAME_RULE = "1-100 characters of A-Z a-z 0-9 _ - . : (the Channels rule plus ':')"

_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")


class InvalidNameError(TypeError, ValueError):
    """A group or event name that herald would refuse.

    A ``TypeError`` because that is what Channels layers raise for a bad group name
    (code that catches it keeps working), and a ``ValueError`` because that is what it is.
    """


def is_valid_name(name: object) -> bool:
    """Whether ``name`` is a valid herald group or event name."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def require_valid_name(kind: str, name: object) -> str:
    """Returns ``name`` when valid, else raises :class:`InvalidNameError` naming the rule.

    ``kind`` is what the name is for ("group", "event"), used in the message.
    """
    if is_valid_name(name):
        return name  # type: ignore[return-value]  # checked by is_valid_name
    raise InvalidNameError(f"invalid herald {kind} name {name!r}: a {kind} name must be {NAME_RULE}")
