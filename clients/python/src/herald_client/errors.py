"""Errors raised by the herald clients.

Every error is a :class:`HeraldError`. When herald answered, the error is a
:class:`HeraldAPIError` subclass chosen by the HTTP status, carrying herald's
machine-readable ``code`` (the ``error`` field of its JSON body), the ``status``,
the human ``message`` and the ``request_id`` to look for in herald's logs.
"""

from __future__ import annotations


class HeraldError(Exception):
    """Base class of every error this package raises about talking to herald."""


class HeraldConnectionError(HeraldError):
    """herald could not be reached, or the connection failed mid-request.

    Raised after the retries for a refused connection are used up, and at once for a
    failure after the request may have been sent (retrying then could notify twice).
    """


class HeraldTimeoutError(HeraldConnectionError):
    """A timeout elapsed (connect, write, read or waiting for a pooled connection)."""


class HeraldAPIError(HeraldError):
    """herald answered with an error status.

    Attributes:
        status: the HTTP status code.
        code: herald's error code (``invalid_group``, ``unauthorized``, ...), or
            ``None`` when the body was not herald's JSON error (e.g. a proxy's page).
        message: herald's explanation for people (may change between versions).
        request_id: the ``X-Request-Id`` of the reply, also on herald's log lines.
        retry_after: seconds from a ``Retry-After`` header, when there was one.
    """

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(f"{status} {code or 'error'}: {message}")

    def __reduce__(self) -> tuple[type[HeraldAPIError], tuple[int, str | None, str, str | None, float | None]]:
        # Survive pickling (task queues, multiprocessing), which rebuilds from these args.
        return (type(self), (self.status, self.code, self.message, self.request_id, self.retry_after))


class BadRequestError(HeraldAPIError):
    """400: a bad name, field, close code, query... ``code`` says which."""


class UnauthorizedError(HeraldAPIError):
    """401 ``unauthorized``: no token, or one that does not verify (expired, wrong key)."""


class ForbiddenError(HeraldAPIError):
    """403 ``forbidden``: a valid token without the ``notify`` scope."""


class NotFoundError(HeraldAPIError):
    """404 ``not_found``: usually a base URL with a wrong path prefix."""


class MethodNotAllowedError(HeraldAPIError):
    """405 ``method_not_allowed``."""


class PayloadTooLargeError(HeraldAPIError):
    """413 ``payload_too_large``: the body is over herald's ``--max-body``."""


class UnsupportedMediaTypeError(HeraldAPIError):
    """415 ``unsupported_media_type``."""


class ServerError(HeraldAPIError):
    """5xx other than 503: a bug in herald (``internal``) or a proxy failure."""


class UnavailableError(HeraldAPIError):
    """503: ``unavailable`` (the broker cannot serve now), ``shutting_down`` or
    ``too_many_connections``. Only ``unavailable`` is retried automatically."""


_BY_STATUS: dict[int, type[HeraldAPIError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    503: UnavailableError,
}


def error_class_for(status: int) -> type[HeraldAPIError]:
    """The :class:`HeraldAPIError` subclass for an HTTP status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else HeraldAPIError
