"""The request id of the current request (a context variable) and the log filter that prints it."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

_request_id: ContextVar[str] = ContextVar("request_id", default="")
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def current_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str):
    """Set the request id (returns the token to reset it)."""
    return _request_id.set(value)


def reset_request_id(token) -> None:
    _request_id.reset(token)


def new_request_id(incoming: str | None = None) -> str:
    """The client's ``X-Request-ID`` when it is a sane token (1-64 of ``A-Za-z0-9._:-``), else a new one."""
    if incoming and _VALID.match(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (``-`` outside a request) so every log line can show it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _request_id.get() or "-"
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


def loggable_path(path) -> str:
    """A request path for a log line: control characters escaped (a percent-encoded newline in a path must
    not write a forged line of its own into the log)."""
    text = str(path)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def configure_logging(level: str = "INFO") -> None:
    """Install one stderr handler with the request-id filter on the root and uvicorn loggers."""
    root = logging.getLogger()
    for h in root.handlers:
        if getattr(h, "_cre", False):
            h.setLevel(level)
            break
    else:
        h = logging.StreamHandler()
        h._cre = True  # type: ignore[attr-defined]
        h.setFormatter(logging.Formatter(LOG_FORMAT))
        h.addFilter(RequestIdFilter())
        root.addHandler(h)
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True


__all__ = ["LOG_FORMAT", "RequestIdFilter", "configure_logging", "current_request_id", "loggable_path",
           "new_request_id", "reset_request_id", "set_request_id"]
