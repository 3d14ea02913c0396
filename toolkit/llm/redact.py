"""Secret redaction for everything the LLM layer logs or raises.

API keys reach error messages in surprising ways (a provider echoing the request, a header in
a traceback), so every string we log, persist or put in an exception passes through
:func:`redact`. It removes well-known key shapes (``sk-...``, ``Bearer ...``,
``api_key=...``) and the literal values of environment variables whose names end in
``_KEY``, ``_TOKEN`` or ``_SECRET``, plus any extra secrets registered at runtime (an
``api_key`` passed as a call parameter).
"""

from __future__ import annotations

import logging
import os
import re
import threading

REDACTED = "[REDACTED]"

_PATTERNS = re.compile(
    r"(?:"
    r"\bsk-[A-Za-z0-9_\-]{6,}"  # OpenAI/Anthropic style keys
    r"|(?<=Bearer )[A-Za-z0-9_\-\.=:/+]{6,}"  # Authorization headers
    r"|(?<=api_key=)[^\s,;&'\")]+"  # api_key=VALUE in text
    r"|(?<=api_key': ')[^']+"  # repr of a dict
    r"|(?<=api_key\": \")[^\"]+"  # JSON
    r")",
    re.IGNORECASE,
)
_SECRET_ENV_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET")
# Shorter values would redact ordinary words (e.g. FOO_KEY=1).
_MIN_SECRET_LEN = 6

_extra_lock = threading.Lock()
_extra_secrets: set[str] = set()
_literal_cache: tuple[frozenset[str], re.Pattern[str] | None] = (frozenset(), None)


def register_secret(value: str | None) -> None:
    """Add a literal secret (e.g. an ``api_key`` parameter) that :func:`redact` must remove."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _extra_lock:
            _extra_secrets.add(value)


def _secret_literals() -> frozenset[str]:
    values = {
        v
        for k, v in os.environ.items()
        if k.upper().endswith(_SECRET_ENV_SUFFIXES) and len(v) >= _MIN_SECRET_LEN
    }
    with _extra_lock:
        values |= _extra_secrets
    return frozenset(values)


def _literal_pattern() -> re.Pattern[str] | None:
    # Recompiled only when the set of secrets changes (env vars can be set at any time).
    global _literal_cache
    secrets = _secret_literals()
    cached_for, pattern = _literal_cache
    if secrets != cached_for:
        # Longest first so a secret containing another is removed whole.
        ordered = sorted(secrets, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None
        _literal_cache = (secrets, pattern)
    return pattern


def redact(text: str) -> str:
    """Return ``text`` with API keys, tokens and secret env var values replaced."""
    if not text:
        return text
    literal = _literal_pattern()
    if literal is not None:
        text = literal.sub(REDACTED, text)
    return _PATTERNS.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message with its redacted rendering; never drops records."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error path
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
            # Render the traceback now so its text can be redacted too.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True
