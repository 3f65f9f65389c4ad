"""Secrets never leave the TqSdk gateway: every text it shows goes through a ``Scrubber``.

Messages (status, logs, order reasons) are scrubbed of the configured secrets (and their base64
forms, as some URLs carry them) and URLs are cut to scheme://host:port (a real account's trading
URL may embed credentials). TqSdk's own logger is kept away from the process's handlers
elsewhere (gateways/tqsdk/session.py).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence

MASK = "***"

_URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://([^\s/'\"<>]+)[^\s'\"<>]*", re.IGNORECASE)


class Scrubber:
    """Makes a text safe to show: secrets (and their base64 forms) masked, URLs cut to host."""

    def __init__(self, secrets: Sequence[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            raw = secret.encode()
            forms |= {secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
        self._forms = sorted((f for f in forms if len(f) >= 3), key=len, reverse=True)

    def __call__(self, text: str, limit: int = 400) -> str:
        text = _URL.sub(lambda m: f"{m.group(1)}://{m.group(2).rpartition('@')[2]}", text)
        for form in self._forms:
            text = text.replace(form, MASK)
        return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(exc: BaseException) -> str:
    """``ExceptionType: message``, the way a status line shows an error (scrub it before showing)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
