"""Scrubbing secrets from text that is about to be logged or stored (error messages, URLs)."""

from __future__ import annotations

import base64
import binascii
import os
import re
from urllib.parse import urlsplit, urlunsplit

_KEY_LIKE = re.compile(r"\b(sk|pk|rk|key|api|tok)[-_][A-Za-z0-9_-]{12,}\b", re.I)
_BEARER = re.compile(r"(?i)\b(bearer|authorization:?)\s+\S+")
# An Authorization header's value, scheme and credentials both: `Authorization: Basic dXNlcjpwdw==`,
# `'authorization': 'Bearer ...'`, `authorization=Token ...` (the bare `authorization` rule above stops at the scheme).
_AUTH_HEADER = re.compile(r"""(?i)\b((?:proxy-)?authorization['"]?\s*[:=]\s*['"]?)"""
                          r"""(?:(basic|bearer|token|digest|negotiate)\s+)?[^\s'",;}]+""")
_BASIC = re.compile(r"(?i)\bbasic\s+([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")
_SECRET_VARS = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.I)


def _secret_values() -> list[str]:
    """Values of environment variables whose names say they are secrets (long enough to be one)."""
    return sorted((v for k, v in os.environ.items() if _SECRET_VARS.search(k) and len(v) >= 8), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with secret env values, Authorization header values (any scheme), Basic credentials, bearer tokens,
    key-like tokens and URL passwords replaced by ***."""
    for value in _secret_values():
        text = text.replace(value, "***")
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2) + ' ' if m.group(2) else ''}***", text)
    text = _BASIC.sub(lambda m: "Basic ***" if _is_basic_credential(m.group(1)) else m.group(0), text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    text = _KEY_LIKE.sub("***", text)
    return re.sub(r"(https?://)[^/@\s:]+:[^/@\s]+@", r"\1***@", text)


def _is_basic_credential(token: str) -> bool:
    """HTTP Basic credentials are base64 of `user:password`: so is this token (and not a word after "basic")?"""
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return False
    return ":" in decoded and decoded.isprintable()


def redact_url(url: str | None) -> str:
    """A URL without user info (user:password@) and without a query string."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
