"""API keys and scopes (CONTRACT section 4): ``DECAYREC_API_KEYS="KEY:SCOPE,..."``.

``write`` implies ``read``; ``admin`` implies both. A request sends ``Authorization: Bearer
KEY``; the key is compared with every configured key in constant time (``hmac.compare_digest``,
no early exit), so response times say nothing about how much of a guess was right.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from decayrec.errors import InputError

__all__ = ["SCOPES", "Keys", "Scope"]

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
_GRANTS: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
}
_MIN_KEY_LENGTH = 16


@dataclass(frozen=True)
class Keys:
    """The configured keys and what each may do; ``open`` means no key is needed (``--insecure-no-auth``)."""

    grants: tuple[tuple[bytes, frozenset[str]], ...]
    open: bool = False

    @classmethod
    def parse(cls, text: str | None, *, insecure: bool = False) -> Keys:
        """Keys from ``DECAYREC_API_KEYS``; with none configured, only ``insecure`` lets the server start."""
        pairs = [p.strip() for p in (text or "").split(",") if p.strip()]
        if not pairs:
            if insecure:
                return cls((), open=True)
            raise InputError(
                "no API keys configured (DECAYREC_API_KEYS is empty)",
                "set DECAYREC_API_KEYS='KEY:read,KEY2:admin' (keys of 16+ characters), or pass --insecure-no-auth on a trusted machine",
            )
        grants = []
        for number, pair in enumerate(pairs, 1):
            key, sep, scope = pair.rpartition(":")
            if not sep or scope not in _GRANTS:
                # Never echo the entry: it may be a key.
                raise InputError(
                    f"DECAYREC_API_KEYS entry {number} has no scope", "write each key as KEY:read, KEY:write or KEY:admin"
                )
            if len(key) < _MIN_KEY_LENGTH:
                raise InputError(
                    f"an API key with scope {scope} has {len(key)} characters",
                    f"use keys of at least {_MIN_KEY_LENGTH} random characters",
                )
            grants.append((key.encode("utf-8"), _GRANTS[scope]))
        return cls(tuple(grants))

    def scopes_of(self, header: str | None) -> frozenset[str] | None:
        """The scopes an ``Authorization`` header grants, or None for a missing or unknown key."""
        if self.open:
            return _GRANTS["admin"]
        if not header:
            return None
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token:
            return None
        given = token.strip().encode("utf-8")
        found: frozenset[str] | None = None
        for key, scopes in self.grants:  # no early exit: every key is compared
            if hmac.compare_digest(key, given):
                found = scopes
        return found
