"""Remote output: what a call prints, warns and (opt-in) logs travels back with its reply.

While a call runs, :func:`capturing` gives it a :class:`Capture` in a context
variable. ``sys.stdout`` and ``sys.stderr`` are replaced (once, and again if
someone else replaced them since) by streams that write into the running
call's capture and still pass everything on to the streams they replaced, so
the server's console shows what it always showed. ``warnings.showwarning``
is wrapped the same way, and a logging handler records log records at or
above the capture's ``log_level``. The capture is per context, so calls
running at once in worker threads never mix their output; threads a call
starts itself are not captured.

The events travel in the reply's ``output`` key, in order::

    "output": [["stdout", "moving to 3.0\\n"],
               ["warning", {"category": "UserWarning", "message": "slow", "filename": "stage.py",
                            "lineno": 12}],
               ["log", {"level": "INFO", "logger": "stage", "message": "done"}]]

At most :data:`MAX_OUTPUT` characters are kept per call; the rest is counted
and dropped.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import warnings
from typing import Any, TextIO

__all__ = ["MAX_OUTPUT", "Capture", "capturing"]

MAX_OUTPUT = 64 * 1024
"""The most characters of output one call sends back; the rest is dropped (and counted)."""

_current: contextvars.ContextVar[Capture | None] = contextvars.ContextVar(
    "redisrpc_output", default=None
)
_install_lock = threading.Lock()


class Capture:
    """The output of one call, in order, bounded by :data:`MAX_OUTPUT` characters.

    In a ``with`` block (see :func:`capturing`), the running code's output comes here.
    """

    __slots__ = ("dropped", "events", "log_level", "size", "token")

    def __init__(self, *, log_level: int | None = None) -> None:
        self.events: list[list[Any]] = []
        self.size = 0
        self.dropped = 0
        self.log_level = log_level
        self.token: contextvars.Token[Capture | None] | None = None

    def __enter__(self) -> Capture:
        self.token = _current.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            _current.reset(self.token)

    def _room(self, size: int) -> bool:
        if self.size + size > MAX_OUTPUT:
            self.dropped += size
            return False
        self.size += size
        return True

    def write(self, stream: str, text: str) -> None:
        """Add text written to ``stream`` ("stdout" or "stderr"), merging consecutive writes."""
        if not text or not self._room(len(text)):
            return
        if self.events and self.events[-1][0] == stream:
            self.events[-1][1] += text
        else:
            self.events.append([stream, text])

    def add(self, kind: str, fields: dict[str, Any]) -> None:
        """Add a warning or a log record."""
        if self._room(len(str(fields.get("message", ""))) + 64):
            self.events.append([kind, fields])

    def result(self) -> list[list[Any]] | None:
        """The events to send, or None when the call was silent."""
        if self.dropped:
            note = f"[redisrpc: {self.dropped} more characters of output were dropped]\n"
            self.events.append(["stderr", note])
        return self.events or None


class _Stream:
    """Stands in for sys.stdout / sys.stderr: the original, and the running call's capture."""

    def __init__(self, name: str, original: TextIO) -> None:
        self._name = name
        self._original = original

    def write(self, text: str) -> int:
        capture = _current.get()
        if capture is not None:
            capture.write(self._name, str(text))
        # The server's own console still shows it, as before output travelled.
        return self._original.write(text)

    def flush(self) -> None:
        self._original.flush()

    def __getattr__(self, name: str) -> Any:
        # encoding, isatty, fileno, ...: the original stream's.
        return getattr(self._original, name)


_original_showwarning = warnings.showwarning


def _showwarning(  # noqa: PLR0917 - warnings.showwarning's own signature
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    _original_showwarning(message, category, filename, lineno, file, line)
    capture = _current.get()
    if capture is None:
        return
    capture.add(
        "warning",
        {
            "category": category.__name__,
            "module": category.__module__,
            "message": str(message),
            "filename": filename,
            "lineno": lineno,
        },
    )


class _LogHandler(logging.Handler):
    """Records log records into the running call's capture, when it asked for them."""

    def emit(self, record: logging.LogRecord) -> None:
        capture = _current.get()
        if capture is None or capture.log_level is None or record.levelno < capture.log_level:
            return
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        capture.add("log", {"level": record.levelname, "logger": record.name, "message": message})


_handler = _LogHandler()


def _install(log_level: int | None) -> None:
    """Put the capturing streams and warning hook in place (again, if replaced since)."""
    if (
        isinstance(sys.stdout, _Stream)
        and isinstance(sys.stderr, _Stream)
        and warnings.showwarning is _showwarning
        and (log_level is None or _handler in logging.getLogger().handlers)
    ):
        return
    with _install_lock:
        if not isinstance(sys.stdout, _Stream):
            sys.stdout = _Stream("stdout", sys.stdout)
        if not isinstance(sys.stderr, _Stream):
            sys.stderr = _Stream("stderr", sys.stderr)
        if warnings.showwarning is not _showwarning:
            global _original_showwarning
            _original_showwarning = warnings.showwarning
            warnings.showwarning = _showwarning
        root = logging.getLogger()
        if log_level is not None and _handler not in root.handlers:
            root.addHandler(_handler)
            if root.level > log_level:
                root.setLevel(log_level)


def capturing(log_level: int | None = None) -> Capture:
    """Capture what the code in the block prints, warns and logs (at ``log_level`` and above).

    ``with capturing() as capture:``; it runs around every call, so it is kept
    cheap: one object, and the hooks looked at without a call while in place.
    """
    if not (
        type(sys.stdout) is _Stream
        and type(sys.stderr) is _Stream
        and warnings.showwarning is _showwarning
        and log_level is None
    ):
        _install(log_level)
    return Capture(log_level=log_level)
