"""Python client for herald, the notification hub.

``Herald`` (sync) and ``AsyncHerald`` (async) call herald's HTTP API;
``herald_client.tokens`` mints tokens (extra ``tokens``);
``herald_client.channels.HeraldChannelLayer`` lets Django Channels code
``group_send`` through herald (extra ``channels``).
"""

__version__ = "0.1.0"

from .aio import AsyncHerald  # noqa: E402  (the clients read __version__)
from .client import Herald  # noqa: E402
from .errors import (  # noqa: E402
    BadRequestError,
    ForbiddenError,
    HeraldAPIError,
    HeraldConnectionError,
    HeraldError,
    HeraldTimeoutError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ServerError,
    UnauthorizedError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from .models import GroupDelivery, GroupInfo, GroupList, GroupSummary, History, NotifyResult  # noqa: E402
from .names import NAME_RULE, InvalidNameError, is_valid_name  # noqa: E402
from .retry import NO_RETRY, RetryPolicy  # noqa: E402

__all__ = [
    "NAME_RULE",
    "NO_RETRY",
    "AsyncHerald",
    "BadRequestError",
    "ForbiddenError",
    "GroupDelivery",
    "GroupInfo",
    "GroupList",
    "GroupSummary",
    "History",
    "Herald",
    "HeraldAPIError",
    "HeraldConnectionError",
    "HeraldError",
    "HeraldTimeoutError",
    "InvalidNameError",
    "MethodNotAllowedError",
    "NotFoundError",
    "NotifyResult",
    "PayloadTooLargeError",
    "RetryPolicy",
    "ServerError",
    "UnauthorizedError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
    "__version__",
    "is_valid_name",
]
