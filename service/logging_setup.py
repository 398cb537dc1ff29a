"""Logging for the service: one line per record, with credentials in URLs redacted."""

from __future__ import annotations

import logging
import re

_CRED = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


class RedactFilter(logging.Filter):
    """Last line of defence: strips ``user:pass@`` from any URL in a log message."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = _CRED.sub(r"\1***@", msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


class BadRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (an over-long request line, a malformed header) with
    a traceback; it is the client's fault, answered with 400 already: one line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = (
                "bad HTTP request from a client (answered %s): %s",
                (exc.code, exc.message[:200]),
            )
            record.exc_info, record.exc_text, record.levelno, record.levelname = (
                None,
                None,
                logging.INFO,
                "INFO",
            )
        return True


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.server").addFilter(BadRequestFilter())
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
