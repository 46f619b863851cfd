"""Redaction of secrets in structured logs.

:class:`Redactor` masks the values of sensitive keys (``sign``, ``app_secret``, ``access_token``,
``session``, ``password``, ``Authorization``…, case-insensitive) in nested dicts and lists, in
query strings, form bodies and JSON text, and every occurrence of a secret value registered with
:meth:`Redactor.register_secret` (e.g. an account's app secret, whatever key it appears under).
:class:`RedactingFilter` applies it to log records (message, args and ``extra`` fields).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = [
    "MASK",
    "SENSITIVE_KEYS",
    "RedactingFilter",
    "Redactor",
    "default_redactor",
    "redact",
    "register_secret",
]

MASK = "***"

#: Keys whose values are always masked (compared lower-cased, ``-`` read as ``_``).
SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "sign",
        "signature",
        "sig",
        "secret",
        "app_secret",
        "appsecret",
        "client_secret",
        "sign_secret",
        "signsecret",
        "msg_secret",
        "access_token",
        "accesstoken",
        "refresh_token",
        "refreshtoken",
        "id_token",
        "token",
        "session",
        "session_key",
        "private_key",
        "privatekey",
        "app_private_key",
        "password",
        "passwd",
        "pwd",
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "api_key",
        "apikey",
        "api_v3_key",
        "x_api_key",
    }
)

# Any key containing one of these is sensitive too (``seller_access_token``, ``aes_secret``…).
_SENSITIVE_PARTS = ("secret", "token", "password", "private_key", "privatekey")

# A secret shorter than this is not registered: masking "a" everywhere would wreck the logs.
_MIN_SECRET_LENGTH = 4

_PAIR = re.compile(r"(?P<key>[A-Za-z0-9_.\-\[\]]+)=(?P<value>[^&;#\s\"']*)")
_JSON_PAIR = re.compile(
    r"(?P<q>[\"'])(?P<key>[A-Za-z0-9_.\-]+)(?P=q)(?P<sep>\s*:\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,}\]]+)"
)
_HEADER = re.compile(
    r"(?P<key>authorization|proxy-authorization|cookie|set-cookie)(?P<sep>\s*:\s*)(?P<value>[^\r\n]+)",
    re.IGNORECASE,
)


def is_sensitive_key(key: str) -> bool:
    """Whether values under ``key`` must never be logged."""
    norm = key.strip().lower().replace("-", "_")
    if norm in SENSITIVE_KEYS:
        return True
    return any(part in norm for part in _SENSITIVE_PARTS)


class Redactor:
    """Masks sensitive values. Thread-safe; secrets can be registered at any time."""

    def __init__(
        self, mask: str = MASK, extra_keys: Iterable[str] = (), max_secrets: int = 4096
    ) -> None:
        self.mask = mask
        self.max_secrets = max_secrets
        self._extra_keys = frozenset(k.lower().replace("-", "_") for k in extra_keys)
        self._lock = threading.Lock()
        # insertion-ordered; beyond max_secrets the oldest (long-expired tokens) are forgotten
        self._secrets: dict[str, None] = {}
        self._pattern: re.Pattern[str] | None = None

    def register_secret(self, *values: str | None) -> None:
        """Mask every occurrence of these strings (also URL-encoded) from now on."""
        new: set[str] = set()
        for value in values:
            if not value or len(value) < _MIN_SECRET_LENGTH:
                continue
            new.update({value, quote(value, safe=""), quote_plus(value)})
        if not new:
            return
        with self._lock:
            if new.issubset(self._secrets):
                # Known already: only mark them recently used (no recompilation).
                for value in new:
                    del self._secrets[value]
                    self._secrets[value] = None
                return
            secrets = dict(self._secrets)
            for value in new:
                secrets.pop(value, None)
                secrets[value] = None
            while len(secrets) > self.max_secrets:
                del secrets[next(iter(secrets))]
            # Longest first so that a secret containing another one is masked whole.
            alternatives = sorted(secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in alternatives))
            self._secrets = secrets

    def sensitive(self, key: str) -> bool:
        return is_sensitive_key(key) or key.lower().replace("-", "_") in self._extra_keys

    # -- values ----------------------------------------------------------------------------------

    def redact(self, value: Any) -> Any:
        """A copy of ``value`` with secrets masked: dicts and lists recursively, strings as
        text (query strings, form bodies, JSON, headers); other scalars unchanged."""
        return self._redact(value, 0)

    def _redact(self, value: Any, depth: int) -> Any:
        if depth > 20:
            return self.mask
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, bytes | bytearray):
            return self.redact_text(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, Mapping):
            return {
                k: (
                    self.mask
                    if isinstance(k, str) and self.sensitive(k) and v not in (None, "")
                    else self._redact(v, depth + 1)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            items = [self._redact(v, depth + 1) for v in value]
            return tuple(items) if isinstance(value, tuple) else items
        return value

    def redact_text(self, text: str) -> str:
        """Mask secrets in free text: registered values, ``key=value`` pairs (query strings,
        form bodies), ``"key": value`` pairs (JSON) and ``Authorization:`` header lines."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(self.mask, text)
        if "=" in text:
            text = _PAIR.sub(self._pair, text)
        if ":" in text:
            text = _JSON_PAIR.sub(self._json_pair, text)
            text = _HEADER.sub(lambda m: m["key"] + m["sep"] + self.mask, text)
        return text

    def redact_url(self, url: str) -> str:
        """A URL with sensitive query parameters, userinfo and registered secrets masked."""
        text = re.sub(r"(?<=://)[^/@\s]+@", self.mask + "@", url)
        return self.redact_text(text)

    def _pair(self, m: re.Match[str]) -> str:
        key = m["key"]
        if m["value"] and self.sensitive(key.rsplit(".", 1)[-1].rstrip("]").split("[")[-1]):
            return f"{key}={self.mask}"
        return m[0]

    def _json_pair(self, m: re.Match[str]) -> str:
        if not self.sensitive(m["key"]):
            return m[0]
        q = m["q"]
        return f'{q}{m["key"]}{q}{m["sep"]}"{self.mask}"'


default_redactor = Redactor()


def register_secret(*values: str | None) -> None:
    """Register secret values with the process-wide :data:`default_redactor`."""
    default_redactor.register_secret(*values)


def redact(value: Any) -> Any:
    """:meth:`Redactor.redact` with the process-wide :data:`default_redactor`."""
    return default_redactor.redact(value)


_STANDARD_ATTRS = frozenset(
    logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__
) | {"message", "asctime", "taskName"}


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the message, args and ``extra`` fields of every record.

    Attach it to handlers (it then covers every logger) or to a logger; it never drops records.
    """

    def __init__(self, redactor: Redactor | None = None, name: str = "") -> None:
        super().__init__(name)
        self.redactor = redactor or default_redactor

    def filter(self, record: logging.LogRecord) -> bool:
        r = self.redactor
        if isinstance(record.msg, str):
            record.msg = r.redact_text(record.msg)
        if isinstance(record.args, Mapping):
            record.args = r.redact(dict(record.args))
        elif isinstance(record.args, tuple):
            record.args = tuple(r.redact(a) for a in record.args)
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            # Tracebacks can carry secrets too (an exception message quoting a token):
            # render the traceback now, redacted, so the formatter uses that text.
            record.exc_text = r.redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = r.redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = r.redact_text(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD_ATTRS:
                continue
            if r.sensitive(key) and value not in (None, ""):
                setattr(record, key, r.mask)
            elif isinstance(value, str | bytes | Mapping | list | tuple):
                setattr(record, key, r.redact(value))
        return True
