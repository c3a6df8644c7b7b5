"""Mint herald's JSON Web Tokens with PyJWT (``pip install herald-client[tokens]``).

- :func:`backend_token`: for your backend's API calls (``scope: notify``).
- :func:`browser_token`: for a page's WebSocket (``sub``, ``exp``, ``groups``, ``publish``).
- :class:`BackendTokens`: a token source for :class:`~herald_client.Herald` that
  re-mints the backend token before it expires, for long-running processes.

``key`` is herald's shared secret (HS256/HS384/HS512, ``--jwt-secret``) or, for
RS256/ES256/EdDSA, the PEM *private* key whose public half herald has
(``--jwt-public-key-file``). ``algorithm`` must be the one herald accepts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

try:
    import jwt
except ImportError as e:  # pragma: no cover - depends on the installed extras
    raise ImportError("herald_client.tokens needs PyJWT: pip install 'herald-client[tokens]'") from e

#: The user id rule herald applies to ``sub``.
SUB_RULE = "1-256 bytes of UTF-8 without control characters"


def _require_sub(sub: str) -> str:
    if (
        not isinstance(sub, str)
        or not 1 <= len(sub.encode("utf-8")) <= 256
        or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in sub)
    ):
        raise ValueError(f"invalid token sub {sub!r}: a user id must be {SUB_RULE}")
    return sub


def _patterns(name: str, patterns: Iterable[str]) -> list[str]:
    if isinstance(patterns, str):
        raise TypeError(f"{name} must be a list of patterns, not a single string")
    return list(patterns)


def _mint(
    claims: dict[str, Any],
    key: str | bytes,
    algorithm: str,
    ttl: float,
    issuer: str | None,
    audience: str | None,
    extra: Mapping[str, Any] | None,
    now: float | None,
) -> str:
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = dict(extra or {})
    payload.update(claims)
    payload["iat"] = issued
    payload["exp"] = issued + int(ttl)
    if issuer is not None:
        payload["iss"] = issuer
    if audience is not None:
        payload["aud"] = audience
    return jwt.encode(payload, key, algorithm=algorithm)


def backend_token(
    key: str | bytes,
    *,
    sub: str = "backend",
    ttl: float = 300,
    algorithm: str = "HS256",
    issuer: str | None = None,
    audience: str | None = None,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A token for herald's HTTP API: ``scope`` is ``notify``, ``sub`` names the service,
    valid for ``ttl`` seconds from ``now`` (default: the current time)."""
    claims = {"sub": _require_sub(sub), "scope": "notify"}
    return _mint(claims, key, algorithm, ttl, issuer, audience, extra, now)


def browser_token(
    key: str | bytes,
    *,
    sub: str,
    groups: Iterable[str] = (),
    publish: Iterable[str] = (),
    ttl: float = 3600,
    algorithm: str = "HS256",
    issuer: str | None = None,
    audience: str | None = None,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A token for one user's WebSocket connections.

    ``groups`` are the groups it may join (exact names or a ``*`` suffix such as
    ``"room:*"``); ``publish`` the groups it may publish frames to (needs herald's
    ``--client-publish``). The connection is also in its personal group
    ``user:<sub>`` and is closed with 4102 at ``exp`` unless refreshed.
    """
    claims = {
        "sub": _require_sub(sub),
        "groups": _patterns("groups", groups),
        "publish": _patterns("publish", publish),
    }
    return _mint(claims, key, algorithm, ttl, issuer, audience, extra, now)


class BackendTokens:
    """A token source that re-mints a backend token before it expires.

    Pass an instance as ``token=`` to :class:`~herald_client.Herald` or
    :class:`~herald_client.AsyncHerald`: it is called before every request and
    returns the cached token until less than ``renew_before`` seconds of it are left.
    Thread-safe.
    """

    def __init__(
        self,
        key: str | bytes,
        *,
        sub: str = "backend",
        ttl: float = 300,
        renew_before: float = 60,
        algorithm: str = "HS256",
        issuer: str | None = None,
        audience: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= renew_before < ttl:
            raise ValueError("renew_before must be at least 0 and less than ttl")
        self._key = key
        self._sub = _require_sub(sub)
        self._algorithm = algorithm
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self._renew_before = renew_before
        self._clock = clock
        # A lock so threads sharing one Herald do not all mint at the same moment.
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def __call__(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._renew_at:
                self._token = backend_token(
                    self._key,
                    sub=self._sub,
                    ttl=self._ttl,
                    algorithm=self._algorithm,
                    issuer=self._issuer,
                    audience=self._audience,
                    now=now,
                )
                self._renew_at = now + self._ttl - self._renew_before
            return self._token
