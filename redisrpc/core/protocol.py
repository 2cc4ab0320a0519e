"""The redisrpc wire format: requests, replies and value encoding, as pure functions.

This module never touches Redis; it turns Python objects into the bytes that
travel on Redis lists and back. PROTOCOL.md describes the same format for
other languages.

A request (pushed with RPUSH onto the service's list)::

    {"function_call": {"name": "add", "args": [5], "kwargs": {}},
     "response_queue": "calc:rpc:5f0c...", "id": "5f0c...", "deadline": 1764000000000,
     "protocol": 2}

A reply (pushed onto ``response_queue``)::

    {"return_value": 9, "id": "5f0c...", "protocol": 2}
    {"exception": "ZeroDivisionError('division by zero')",
     "error": {"type": "ZeroDivisionError", "message": "division by zero", "traceback": "..."},
     "id": "5f0c...", "protocol": 2}

Only ``function_call``, ``response_queue``, ``return_value`` and ``exception``
exist in the original RedisRPC protocol (version 1); every other key is an
optional extension that old peers ignore.
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from ..errors import EncodingError, MessageTooLargeError, ProtocolError

__all__ = [
    "BUILTIN_CALLS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DESCRIBE",
    "GET_PROPERTY",
    "MAX_NESTING",
    "OWN_ERROR_PREFIX",
    "PING",
    "PROTOCOL_VERSION",
    "RELEASE",
    "REPLY_EXTENSIONS",
    "SET_PROPERTY",
    "TAG",
    "ErrorInfo",
    "Reply",
    "Request",
    "decode_reply",
    "decode_request",
    "decode_value",
    "encode_reply",
    "encode_reply_with",
    "encode_request",
    "encode_value",
    "is_valid_name",
    "reply_queue_prefix",
    "salvage_response_queue",
]

PROTOCOL_VERSION = 2
"""Version 1 is the original RedisRPC format; version 2 adds the optional keys."""

DESCRIBE = "__describe__"
GET_PROPERTY = "__getprop__"
SET_PROPERTY = "__setprop__"
PING = "__ping__"
BUILTIN_CALLS = frozenset({DESCRIBE, GET_PROPERTY, SET_PROPERTY, PING})
"""Calls every redisrpc server answers itself; no other ``_`` name is ever callable."""

TAG = "__redisrpc__"
"""The key that marks a tagged value (bytes, arrays, non-finite floats) in JSON."""

DEFAULT_MAX_MESSAGE_SIZE = 32 * 1024 * 1024

OWN_ERROR_PREFIX = "redisrpc."
"""Prefix of the error types a server reports itself (``redisrpc.ProtocolError``, ...)."""

MAX_NESTING = 100
"""The deepest nesting of arrays and objects a message may have.

A fixed limit, so that whether a message decodes never depends on how deep
the decoding thread's stack happens to be.
"""

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}\Z")
_QUEUE_RE = re.compile(rb'"response_queue"\s*:\s*"([^"\\]{1,400})"')
_MAX_QUEUE_LEN = 400


def is_valid_name(name: object) -> bool:
    """Tell whether ``name`` is a plain identifier: no dots, spaces or code."""
    return isinstance(name, str) and _NAME_RE.match(name) is not None


def reply_queue_prefix(queue: str) -> str:
    """Return the prefix every reply queue of ``queue`` must carry (``calc:rpc:``).

    Servers refuse to write anywhere else, so a hostile request cannot make a
    server push into, or set an expiry on, an unrelated key.
    """
    return f"{queue}:rpc:"


# -- values -----------------------------------------------------------------


def _encode_default(obj: Any) -> Any:
    """Encode the types JSON lacks; called by ``json.dumps`` only for those."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {TAG: "bytes", "base64": base64.b64encode(bytes(obj)).decode("ascii")}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(obj, numpy.ndarray):
            if obj.dtype.hasobject or obj.dtype.fields is not None:
                raise EncodingError(f"cannot encode a numpy array of dtype {obj.dtype}")
            arr = numpy.ascontiguousarray(obj)
            return {
                TAG: "ndarray",
                "dtype": arr.dtype.str,
                "shape": list(arr.shape),
                "base64": base64.b64encode(arr.tobytes()).decode("ascii"),
            }
        if isinstance(obj, numpy.generic):
            return _tag_non_finite(obj.item())
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise EncodingError(f"cannot encode a value of type {type(obj).__qualname__} as JSON")


def _non_finite(value: float) -> dict[str, str]:
    return {TAG: "float", "value": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _tag_non_finite(obj: Any) -> Any:
    """Replace NaN and infinities, which strict JSON parsers reject, by tagged values."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else _non_finite(obj)
    if isinstance(obj, dict):
        return {k: _tag_non_finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_tag_non_finite(v) for v in obj]
    return obj


def _dumps(obj: Any) -> bytes:
    try:
        return _json_bytes(obj)
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise EncodingError(str(exc)) from exc
    # Rare path: the value holds NaN or an infinity somewhere.
    try:
        return _json_bytes(_tag_non_finite(obj))
    except ValueError as exc:
        raise EncodingError(str(exc)) from exc


# Built once: json.dumps/loads with options would build a new codec for every message.
_ENCODER = json.JSONEncoder(default=_encode_default, allow_nan=False, separators=(",", ":"))


def _json_bytes(obj: Any) -> bytes:
    """Strict JSON, with every failure but non-finite floats reported as EncodingError."""
    try:
        text = _ENCODER.encode(obj)
    except EncodingError:
        raise
    except TypeError as exc:  # e.g. a dict key that is a tuple
        raise EncodingError(f"cannot encode as JSON: {exc}") from exc
    except RecursionError as exc:
        raise EncodingError("value is nested too deeply to encode") from exc
    return text.encode()


def _decode_tag(obj: dict[str, Any]) -> Any:
    tag = obj.get(TAG)
    if tag is None:
        return obj
    try:
        if tag == "bytes":
            return base64.b64decode(obj["base64"], validate=True)
        if tag == "float":
            return float(obj["value"])
        if tag == "ndarray":
            try:
                import numpy  # noqa: PLC0415 - numpy is optional; only arrays need it
            except ImportError as exc:
                raise EncodingError("a numpy array arrived but numpy is not installed") from exc
            data = base64.b64decode(obj["base64"], validate=True)
            dtype = numpy.dtype(obj["dtype"])
            if dtype.hasobject:
                raise ProtocolError("arrays of Python objects are refused")
            return numpy.frombuffer(data, dtype=dtype).reshape(obj["shape"]).copy()
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"malformed tagged value {tag!r}: {exc}") from exc
    return obj


def encode_value(value: Any) -> bytes:
    """Encode one value as JSON bytes (tuples become lists; bytes and arrays are tagged)."""
    return _dumps(value)


def decode_value(raw: bytes | str) -> Any:
    """Decode JSON bytes produced by :func:`encode_value`."""
    return _loads(raw)


_DECODER = json.JSONDecoder(object_hook=_decode_tag)


def _too_deep(obj: Any, limit: int) -> bool:
    """Tell whether ``obj`` nests arrays and objects more than ``limit`` levels deep."""
    level: list[Any] = [obj]
    for _ in range(limit):
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, (dict, list))
        ]
        if not level:
            return False
    return True


def _loads(raw: bytes | str) -> Any:
    try:
        value = _DECODER.decode(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        # Few brackets cannot nest deeply: the walk runs only for messages that might.
        data = raw.encode() if isinstance(raw, str) else raw
        brackets = data.count(b"[") + data.count(b"{")
        if brackets > MAX_NESTING and _too_deep(value, MAX_NESTING):
            raise ProtocolError(f"message is nested too deeply (more than {MAX_NESTING} levels)")
        return value
    except RecursionError as exc:
        raise ProtocolError("message is nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"message is not valid UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"message is not valid JSON: {exc}") from exc
    except ProtocolError:
        raise
    except ValueError as exc:  # e.g. an integer longer than Python's int_max_str_digits
        raise ProtocolError(f"message cannot be decoded: {exc}") from exc


# -- requests ---------------------------------------------------------------


@dataclass(slots=True)
class Request:
    """One call: the method name, its arguments and where to send the reply."""

    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    response_queue: str = ""
    id: str | None = None
    deadline: int | None = None
    """Milliseconds since the epoch on the Redis server's clock; None means no deadline."""
    lock: str | None = None
    """The advisory-lock token the caller holds, if any."""
    protocol: int = 1


def encode_request(request: Request) -> bytes:
    """Encode a request for RPUSH onto the service list."""
    message: dict[str, Any] = {
        "function_call": {"name": request.name, "args": request.args, "kwargs": request.kwargs},
        "response_queue": request.response_queue,
        "protocol": PROTOCOL_VERSION,
    }
    if request.id is not None:
        message["id"] = request.id
    if request.deadline is not None:
        message["deadline"] = request.deadline
    if request.lock is not None:
        message["lock"] = request.lock
    return _dumps(message)


def salvage_response_queue(raw: bytes, queue: str) -> str | None:
    """Find a usable reply queue in a message too broken or too big to decode.

    Used only to answer a bad request with an error; the result still has to
    carry the service's reply prefix.
    """
    match = _QUEUE_RE.search(raw[:4096])
    if match is None:
        return None
    try:
        candidate = match.group(1).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return candidate if candidate.startswith(reply_queue_prefix(queue)) else None


def decode_request(raw: bytes, *, queue: str, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Request:
    """Decode and validate a request taken from ``queue``.

    Raises :class:`ProtocolError` (or :class:`MessageTooLargeError`) with a
    message fit to send back to the caller.
    """
    if len(raw) > max_size:
        raise MessageTooLargeError(f"request of {len(raw)} bytes exceeds the limit of {max_size}")
    message = _loads(raw)
    if not isinstance(message, dict):
        raise ProtocolError(f"a request must be a JSON object, not {type(message).__name__}")
    response_queue = message.get("response_queue")
    if not isinstance(response_queue, str) or not response_queue:
        raise ProtocolError("'response_queue' must be a non-empty string")
    if len(response_queue) > _MAX_QUEUE_LEN or not response_queue.startswith(
        reply_queue_prefix(queue)
    ):
        raise ProtocolError(
            f"'response_queue' must start with {reply_queue_prefix(queue)!r}"
            f" and be at most {_MAX_QUEUE_LEN} characters"
        )
    call = message.get("function_call")
    if not isinstance(call, dict):
        raise ProtocolError("'function_call' must be an object")
    name = call.get("name")
    if not isinstance(name, str):
        raise ProtocolError("'function_call.name' must be a string")
    # The original clients send null for absent args/kwargs.
    args = call.get("args")
    kwargs = call.get("kwargs")
    args = [] if args is None else args
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(args, list):
        raise ProtocolError("'function_call.args' must be an array")
    if not isinstance(kwargs, dict):
        raise ProtocolError("'function_call.kwargs' must be an object")
    request_id = message.get("id")
    if request_id is not None and not (isinstance(request_id, str) and len(request_id) <= 128):
        raise ProtocolError("'id' must be a string of at most 128 characters")
    deadline = message.get("deadline")
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, int)):
        raise ProtocolError("'deadline' must be an integer (milliseconds, Redis clock)")
    lock = message.get("lock")
    if lock is not None and not isinstance(lock, str):
        raise ProtocolError("'lock' must be a string")
    protocol = message.get("protocol", 1)
    return Request(
        name=name,
        args=args,
        kwargs=kwargs,
        response_queue=response_queue,
        id=request_id,
        deadline=deadline,
        lock=lock,
        protocol=protocol if isinstance(protocol, int) and not isinstance(protocol, bool) else 1,
    )


# -- replies ----------------------------------------------------------------


@dataclass(slots=True)
class ErrorInfo:
    """What a server says about a failed call."""

    type: str
    message: str
    traceback: str = ""
    server: str = ""
    details: dict[str, Any] | None = None
    """Structured facts about a redisrpc refusal (e.g. ``holder`` for LockedError)."""


@dataclass(slots=True)
class Reply:
    """The answer to one request: a value, or an error."""

    value: Any = None
    error: ErrorInfo | None = None
    id: str | None = None
    extra: dict[str, Any] | None = None
    """Optional reply keys of later extensions (see :data:`REPLY_EXTENSIONS`), as sent."""


def encode_reply(reply: Reply) -> bytes:
    """Encode a reply for RPUSH onto the caller's response queue.

    A value that cannot be encoded turns into an error reply naming its type,
    so the caller always gets an answer.
    """
    message: dict[str, Any]
    if reply.error is None:
        message = {"return_value": reply.value, "protocol": PROTOCOL_VERSION}
        if reply.id is not None:
            message["id"] = reply.id
        if reply.extra:
            message.update(reply.extra)
        try:
            return _dumps(message)
        except EncodingError as exc:
            reply = Reply(
                error=ErrorInfo(
                    OWN_ERROR_PREFIX + "EncodingError", f"the return value could not be sent: {exc}"
                ),
                id=reply.id,
                extra=reply.extra,
            )
    error = reply.error
    assert error is not None
    message = {
        # Version 1 clients read only this string; it reads like Python's repr.
        "exception": f"{error.type}({error.message!r})",
        "error": {
            "type": error.type,
            "message": error.message,
            "traceback": error.traceback,
            "server": error.server,
        },
        "protocol": PROTOCOL_VERSION,
    }
    if error.details:
        message["error"]["details"] = error.details
    if reply.id is not None:
        message["id"] = reply.id
    if reply.extra:
        message.update(reply.extra)
    return _dumps(message)


def decode_reply(raw: bytes | str) -> Reply:
    """Decode a reply; version 1 replies carry only ``return_value`` or ``exception``."""
    message = _loads(raw)
    if not isinstance(message, dict):
        raise ProtocolError(f"a reply must be a JSON object, not {type(message).__name__}")
    reply_id = message.get("id")
    reply_id = reply_id if isinstance(reply_id, str) else None
    extra = {key: message[key] for key in REPLY_EXTENSIONS if key in message} or None
    # The original Python client tests `exception is not None`: null means success.
    if message.get("exception") is not None:
        detail = message.get("error")
        if isinstance(detail, dict):
            return Reply(
                error=ErrorInfo(
                    type=str(detail.get("type") or "Exception"),
                    message=str(detail.get("message", "")),
                    traceback=str(detail.get("traceback") or ""),
                    server=str(detail.get("server") or ""),
                    details=detail["details"] if isinstance(detail.get("details"), dict) else None,
                ),
                id=reply_id,
                extra=extra,
            )
        return Reply(error=ErrorInfo(type="", message=str(message["exception"])), id=reply_id)
    if "return_value" not in message:
        raise ProtocolError("a reply needs 'return_value' or 'exception'")
    return Reply(value=message["return_value"], id=reply_id, extra=extra)


# -- paths, handles and remote output (see PROTOCOL.md "Nested objects, handles, output") --

RELEASE = "__release__"
"""The built-in call that drops handles (args: their ids); the server sends no reply to it."""

REPLY_EXTENSIONS = ("output", "handles")
"""Optional reply keys: ``output`` (what the call printed, warned and logged, in order) and
``handles`` (true when the return value holds handles)."""


def encode_reply_with(reply: Reply, fallback: Any) -> bytes:
    """Like :func:`encode_reply`, but values with no JSON form become ``fallback(value)``.

    ``fallback`` returns a JSON-able stand-in (a tagged handle); when it was
    used, the reply carries ``"handles": true`` so clients look for them.
    """
    if reply.error is not None:
        return encode_reply(reply)
    plain: dict[str, Any] = {"return_value": reply.value, "protocol": PROTOCOL_VERSION}
    if reply.id is not None:
        plain["id"] = reply.id
    if reply.extra:
        plain.update(reply.extra)
    try:
        return _dumps(plain)  # the common case: plain JSON, the shared encoder
    except EncodingError:
        pass
    used = False

    def default(obj: Any) -> Any:
        nonlocal used
        try:
            return _encode_default(obj)
        except EncodingError:
            used = True
            return fallback(obj)

    encoder = json.JSONEncoder(default=default, allow_nan=False, separators=(",", ":"))
    message: dict[str, Any] = {"return_value": reply.value, "protocol": PROTOCOL_VERSION}
    if reply.id is not None:
        message["id"] = reply.id
    if reply.extra:
        message.update(reply.extra)
    try:
        try:
            text = encoder.encode(message)
        except ValueError as exc:
            if "Out of range float" not in str(exc):
                raise
            text = encoder.encode(_tag_non_finite(message))
    except (TypeError, ValueError, RecursionError, EncodingError) as exc:
        error = ErrorInfo(
            OWN_ERROR_PREFIX + "EncodingError", f"the return value could not be sent: {exc}"
        )
        return encode_reply(Reply(error=error, id=reply.id, extra=reply.extra))
    if used:
        # A handle marker at the end: the client walks the value only when told to.
        text = text[:-1] + ',"handles":true}'
    return text.encode()
