"""Errors of the service package, and URL redaction.

Hierarchy::

    ServiceError
    ├── ConfigError          the config file or an env var is invalid (names the key)
    ├── SourceError          a stream source cannot be opened or read (names the redacted URL)
    ├── StreamExists         a stream with that id is already served (HTTP 409)
    ├── NotOwned             another shard of the cluster serves that stream (HTTP 409, names it)
    ├── UnknownStream        no stream with that id (HTTP 404)
    └── WhipError            a WHIP offer cannot be taken (its HTTP status: 400, 409, 415)

Every message that names a URL goes through ``redact_url`` first: credentials never reach logs,
metrics, MQTT or error messages.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_SECRET_QUERY = re.compile(
    r"(?i)((?:password|passwd|pwd|pass|token|key|secret|signature|sig|auth)[^=&]*=)[^&]*"
)


def redact_url(url: str) -> str:
    """``rtsp://user:pass@host/x?token=t`` -> ``rtsp://***@host/x?token=***``; non-URLs unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class ServiceError(Exception):
    pass


class ConfigError(ServiceError):
    pass


class SourceError(ServiceError):
    def __init__(self, url: str, reason: str) -> None:
        safe = redact_url(url)
        super().__init__(f"{safe}: {reason}")
        self.url = safe
        self.reason = reason


class StreamExists(ServiceError):
    pass


class NotOwned(ServiceError):
    def __init__(self, message: str, shard: int) -> None:
        super().__init__(message)
        self.shard = shard


class UnknownStream(ServiceError):
    pass


class WhipError(ServiceError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
