"""API keys of the HTTP service: loaded from a file or ``CLEF_API_KEYS``, compared in constant time."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

#: Environment variable holding comma-separated keys.
ENV_KEYS = "CLEF_API_KEYS"
#: Shortest key accepted (guessable keys are refused at start-up).
MIN_KEY_LENGTH = 16


class ApiKeyError(ValueError):
    """No usable API key was configured."""


def load_api_keys(path: str | Path | None = None, *, env: str = ENV_KEYS) -> list[str]:
    """Keys from ``path`` (one per line, ``#`` comments) and/or the ``env`` variable (comma-separated).

    Raises
    ------
    ApiKeyError
        No key found, a file that cannot be read, or a key shorter than ``MIN_KEY_LENGTH``.
    """
    keys: list[str] = []
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ApiKeyError(f"API key file {p}: cannot read it ({exc.strerror or exc})") from None
        keys += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    keys += [k.strip() for k in os.environ.get(env, "").split(",") if k.strip()]
    if not keys:
        raise ApiKeyError(f"no API key: expected keys in --api-keys FILE (one per line) or in {env} "
                          "(comma-separated), found none")
    short = [k for k in keys if len(k) < MIN_KEY_LENGTH]
    if short:
        raise ApiKeyError(f"API keys of at least {MIN_KEY_LENGTH} characters expected, found {len(short)} shorter "
                          "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return list(dict.fromkeys(keys))


class ApiKeys:
    """A set of keys checked in constant time (every key compared, no early exit)."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ApiKeyError("at least one API key expected")
        self._keys = [k.encode() for k in keys]

    def valid(self, presented: str) -> bool:
        """True when ``presented`` equals one of the keys."""
        candidate = presented.encode()
        ok = False
        for k in self._keys:
            ok |= hmac.compare_digest(candidate, k)
        return ok
