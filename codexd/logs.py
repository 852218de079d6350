"""structlog set-up: JSON lines to stderr when it is not a terminal, console otherwise.

Events are snake_case facts with key/values. Per-connection context (``conn``) is bound with
contextvars. Values of keys that look like they hold secrets are replaced before rendering, as a
last line of defence: code must not log secrets in the first place.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import time
from collections import deque
from typing import Any, TextIO

import msgspec
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_SECRET_KEY = re.compile(r"(token|secret|password|passwd|api[_-]?key|authorization)", re.I)
_json = msgspec.json.Encoder()


_key_is_secret: dict[str, bool] = {}


def _redact(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in event:
        secret = _key_is_secret.get(key)
        if secret is None:
            secret = _key_is_secret[key] = bool(_SECRET_KEY.search(key))
        if secret:
            event[key] = "[redacted]"
    return event


#: The daemon's last log events (after redaction), for ``daemon/diagnostics``.
RECENT: deque[dict[str, Any]] = deque(maxlen=2000)


def _remember(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    kept = dict(event)
    if "exc_info" in kept:  # not the exception itself: it would keep its frames alive
        kept["exc_info"] = True
    RECENT.append(kept)
    return event


class _Timestamp:
    """ISO 8601 UTC timestamps with microseconds; the date part is formatted once a second
    (structlog's TimeStamper formats a datetime per line, a measurable cost per RPC call)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        return event


def _json_dumps(obj: Any, **_kw: Any) -> str:
    try:
        return _json.encode(obj).decode()
    except (TypeError, msgspec.EncodeError):
        return _json.encode({k: repr(v) if not isinstance(v, str | int | float | bool | None)
                             else v for k, v in obj.items()}).decode()


#: syslog priorities (sd-daemon(3)'s ``<N>`` line prefix) by structlog level.
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


def is_journal(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """Whether ``stream`` is connected to the systemd journal: ``JOURNAL_STREAM`` names its
    device and inode (systemd.exec(5)), so a redirected stderr is not mistaken for it."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


class _JournalPriority:
    """Prefixes each rendered line with its syslog priority, so ``journalctl -p err`` works."""

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, name: str, event: dict[str, Any]) -> str:
        prefix = f"<{_PRIORITY.get(event.get('level', name), 6)}>"
        return prefix + str(self._renderer(logger, name, event))


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """(Re)configure logging; safe to call again on SIGHUP. Under the journal each line carries
    its priority; JSON lines carry a traceback as a field (``exception``), never raw lines."""
    stream = stream or sys.stderr
    journal = is_journal(stream)
    if fmt == "auto":
        fmt = "console" if stream.isatty() and not journal else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _Timestamp(),
        _redact,
        _remember,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_json_dumps)
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty() and not journal)
    if journal:
        renderer = _JournalPriority(renderer)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def capture_stray_tracebacks() -> None:
    """Route what Python would print as a raw traceback (an exception in a thread, an
    unraisable one in a finalizer) through the log as one JSON event with a traceback field."""
    import threading
    import traceback

    logger = get_logger("codexd")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        logger.error("thread_exception", thread=args.thread.name if args.thread else None,
                     error=f"{args.exc_type.__name__}: {args.exc_value}",
                     traceback="".join(traceback.format_exception(
                         args.exc_type, args.exc_value, args.exc_traceback)))

    def unraisable_hook(u: Any) -> None:
        logger.warning("unraisable_exception", message=u.err_msg or "exception ignored",
                       object=repr(u.object)[:200],
                       error=f"{u.exc_type.__name__}: {u.exc_value}",
                       traceback="".join(traceback.format_exception(
                           u.exc_type, u.exc_value, u.exc_traceback)))

    threading.excepthook = thread_hook
    sys.unraisablehook = unraisable_hook
