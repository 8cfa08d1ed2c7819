"""Scrubbing secrets from text that is about to be logged or stored (error messages, URLs)."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

_KEY_LIKE = re.compile(r"\b(sk|pk|rk|key|api|tok)[-_][A-Za-z0-9_-]{12,}\b", re.I)
_BEARER = re.compile(r"(?i)\b(bearer|authorization:?)\s+\S+")
_SECRET_VARS = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.I)


def _secret_values() -> list[str]:
    """Values of environment variables whose names say they are secrets (long enough to be one)."""
    return sorted((v for k, v in os.environ.items() if _SECRET_VARS.search(k) and len(v) >= 8), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with secret env values, key-like tokens, bearer tokens and URL passwords replaced by ***."""
    for value in _secret_values():
        text = text.replace(value, "***")
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    text = _KEY_LIKE.sub("***", text)
    return re.sub(r"(https?://)[^/@\s:]+:[^/@\s]+@", r"\1***@", text)


def redact_url(url: str | None) -> str:
    """A URL without user info (user:password@) and without a query string."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
