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
import binascii
import contextlib
import enum
import functools
import json
import math
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from ..errors import EncodingError, MessageTooLargeError, ProtocolError, RedisRPCError
from .keys import cancel_key, cancels_key, reply_queue_prefix, running_key  # re-exported

__all__ = [
    "BLOB_VERSION",
    "BUILTIN_CALLS",
    "DEFAULT_MAX_BLOB_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DESCRIBE",
    "GET_PROPERTY",
    "INTERIM_VERSION",
    "MAX_NESTING",
    "OWN_ERROR_PREFIX",
    "PING",
    "PROTOCOL_VERSION",
    "RELEASE",
    "REPLY_EXTENSIONS",
    "SET_PROPERTY",
    "TAG",
    "ErrorInfo",
    "Framed",
    "Reply",
    "Request",
    "blob_count",
    "blob_header",
    "cancel_key",
    "cancels_key",
    "check_serializer",
    "decode_reply",
    "decode_request",
    "decode_value",
    "encode_blobbed_message",
    "encode_framed_item",
    "encode_framed_reply",
    "encode_framed_request",
    "encode_item",
    "encode_plain_message",
    "encode_progress",
    "encode_reply",
    "encode_reply_with",
    "encode_request",
    "encode_value",
    "encode_value_reply",
    "framed",
    "is_valid_name",
    "max_values",
    "reply_queue_prefix",
    "request_message",
    "running_key",
    "salvage_id",
    "salvage_response_queue",
]

PROTOCOL_VERSION = 5
"""Version 1 is the original RedisRPC format; version 2 adds the optional keys;
version 3 adds interim messages (progress, stream items) and cancellation;
version 4 adds the binary side channel (bytes and arrays as raw blobs);
version 5 adds watched values (see :mod:`redisrpc.core.watch`)."""

INTERIM_VERSION = 3
"""The first version whose callers take interim messages (progress, stream items)."""

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
# The array dtypes that travel (PROTOCOL.md, "Arrays"): fixed-size numbers, bytes and text.
_DTYPE_RE = re.compile(
    r"[<>|=]?(?:b1|[iu][1248]|f[248]|c(?:8|16)|S[1-9][0-9]{0,5}|U[1-9][0-9]{0,5})"
)
_PLAIN_QUEUE_RE = re.compile(rb"[A-Za-z0-9_:.\-]{1,400}")


def check_serializer(transport: str) -> None:
    """Accept the original RedisRPC constructors' ``transport='json'``; refuse anything else.

    redisrpc speaks JSON only: pickle would let whoever can push a message run code.
    """
    if transport != "json":
        raise ValueError(
            f"transport={transport!r} is not supported: redisrpc speaks JSON only"
            " (pickle would let whoever can push a message run code)"
        )


def is_valid_name(name: object) -> bool:
    """Tell whether ``name`` is a plain identifier: no dots, spaces or code."""
    return isinstance(name, str) and _NAME_RE.match(name) is not None


# -- values -----------------------------------------------------------------


def _encode_default(obj: Any) -> Any:
    """Encode the types JSON lacks; called by ``json.dumps`` only for those."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        sink = _SINK.get()
        if sink is not None:  # protocol 4: a raw blob, or base64 checked against the limit first
            blob = sink.take(memoryview(obj).cast("B"))
            if blob is not None:
                return {TAG: "bytes", "blob": blob}
        return {TAG: "bytes", "base64": base64.b64encode(bytes(obj)).decode("ascii")}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(obj, numpy.ndarray):
            if not _DTYPE_RE.fullmatch(obj.dtype.str):
                raise EncodingError(
                    f"cannot encode a numpy array of dtype {obj.dtype} ({obj.dtype.str});"
                    " see PROTOCOL.md for the dtypes that travel"
                )
            # Not ascontiguousarray: it turns a 0-d array into a 1-d one.
            arr = obj if obj.flags.c_contiguous else obj.copy(order="C")
            sink = _SINK.get()
            if sink is not None:
                # The array's own memory travels (no copy): a flat view of its bytes.
                blob = sink.take(memoryview(arr.reshape(-1).view(numpy.uint8)))
                if blob is not None:
                    shape = list(arr.shape)
                    return {TAG: "ndarray", "dtype": arr.dtype.str, "shape": shape, "blob": blob}
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
    if isinstance(obj, (list, tuple, set, frozenset)):  # a set travels as a list
        return [_tag_non_finite(v) for v in obj]
    return obj


def _escape(obj: Any, found: list[bool]) -> Any:
    """Replace each plain dict that uses the key ``__redisrpc__`` by a ``dict`` tagged value.

    Only dicts of the caller's value are seen here (tagged values are made
    later, by the encoder), so a user's dict can never pass for a tagged
    value. ``found`` becomes ``[True]`` when something was escaped.
    """
    if isinstance(obj, dict):
        if TAG in obj:
            found[:] = [True]
            items = [[_json_key(k), _escape(v, found)] for k, v in obj.items()]
            return {TAG: "dict", "items": items}
        return {k: _escape(v, found) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_escape(v, found) for v in obj]
    return obj


def _json_key(key: Any) -> str:
    """A dict key as JSON writes it (``1`` -> ``"1"``, ``True`` -> ``"true"``)."""
    if isinstance(key, str):
        return key
    try:
        return str(next(iter(json.loads(_ENCODER.encode({key: 0})))))
    except (TypeError, ValueError) as exc:
        raise EncodingError(f"cannot encode a dict key of type {type(key).__qualname__}") from exc


def _dumps(obj: Any) -> bytes:
    data = _dumps_unescaped(obj)
    if data.find(_TAG_KEY) != -1:
        # Rare path: the tag key occurs; if a plain dict uses it, escape that dict.
        found = [False]
        try:
            escaped = _escape(obj, found)
        except RecursionError as exc:
            raise EncodingError("value is nested too deeply to encode") from exc
        if found[0]:
            return _dumps_unescaped(escaped)
    return data


_TAG_KEY = b'"' + TAG.encode() + b'"'
# Messages are searched with ``data.find(part) != -1``, not ``part in data``: bytes'
# __contains__ first tries its argument as an integer, and for a bytes argument
# raises, formats and clears a TypeError (about 1,900 instructions) before searching.


def _dumps_unescaped(obj: Any) -> bytes:
    try:
        return _json_bytes(obj)
    except MessageTooLargeError:
        raise  # a blob or base64 string over the limit, refused before it was encoded
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
# The same without a default: it refuses every value that _encode_default would turn into JSON.
_PLAIN_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def _plain_dumps(obj: Any) -> bytes | None:
    """``obj`` as :func:`_dumps` encodes it, when it holds JSON's own types only; else None.

    The common message needs none of the rare paths: no bytes or arrays
    (so no blobs, and no context variable set to collect them), no NaN or
    infinity to tag, no dict using the tag key. Anything else (including what
    the encoder refuses) gives None, and :func:`_dumps` decides, within
    :class:`_sending`. Where this succeeds ``default`` is never called, so the
    bytes are the ones ``_dumps`` would give.
    """
    try:
        if _orjson is not None:
            data: bytes = _orjson.dumps(obj, option=_ORJSON_OPTIONS)
            if data.find(_NULL) != -1 and not _finite(obj):
                return None  # a NaN or an infinity, which orjson writes as null: to be tagged
        else:
            data = _PLAIN_ENCODER.encode(obj).encode()
    except (TypeError, ValueError, RecursionError):  # orjson.JSONEncodeError is a TypeError
        return None
    return None if data.find(_TAG_KEY) != -1 else data


_PLAIN_VALUES = frozenset({str, int, bool, type(None)})  # JSON scalars but floats: exact types


def _finite(obj: Any) -> bool:
    """Whether ``obj`` holds no NaN or infinity (JSON has none; orjson writes them as null).

    Asked only when orjson's output has a null, which is most often a None (a
    setter's or a move's reply, a keyword left at None): those need no tags.
    It looks wherever orjson or :func:`_encode_default` may find a float:
    containers and sets (numpy scalars are tagged by the default). An enum,
    which orjson encodes by its value and the json module refuses, answers
    False: the json module decides, as it did before this shortcut.
    """
    if type(obj) in _PLAIN_VALUES:
        return True
    if isinstance(obj, float):
        return obj - obj == 0.0  # nan - nan and inf - inf are nan
    if isinstance(obj, dict):
        obj = obj.values()
    elif isinstance(obj, enum.Enum):
        return False
    elif not isinstance(obj, (list, tuple, set, frozenset)):
        return True
    # A loop, not all(generator): the common items are decided here, with no frame each.
    for item in obj:  # noqa: SIM110
        if type(item) not in _PLAIN_VALUES and not _finite(item):
            return False
    return True


def _json_bytes(obj: Any) -> bytes:
    """Strict JSON, with every failure but non-finite floats reported as EncodingError."""
    if _orjson is not None:
        data = _orjson_bytes(obj)
        if data is not None:
            return data
    _restart()
    try:
        text = _ENCODER.encode(obj)
    except EncodingError:
        raise
    except TypeError as exc:  # e.g. a dict key that is a tuple
        raise EncodingError(f"cannot encode as JSON: {exc}") from exc
    except RecursionError as exc:
        raise EncodingError("value is nested too deeply to encode") from exc
    return text.encode()


def _b64decode(text: Any) -> bytes:
    """Strict base64 (TypeError or ValueError when invalid), without copying an ASCII str first."""
    if sys.version_info >= (3, 11) and isinstance(text, str):
        # b64decode(validate=True) would first copy the whole text into bytes.
        return binascii.a2b_base64(text, strict_mode=True)
    return base64.b64decode(text, validate=True)


def _decode_tag(obj: dict[str, Any]) -> Any:
    tag = obj.get(TAG)
    if tag is None:
        return obj
    try:
        if tag == "bytes":
            return _inbox(obj["blob"]) if "blob" in obj else _b64decode(obj["base64"])
        if tag == "float":
            return float(obj["value"])
        if tag == "dict":  # a plain dict that uses the tag key itself (see _escape)
            items = obj["items"]
            pairs = isinstance(items, list) and all(
                isinstance(i, list) and len(i) == 2 and isinstance(i[0], str) for i in items
            )
            if not pairs:
                raise ProtocolError("malformed tagged value 'dict': items must be [key, value]")
            return {key: value for key, value in items}
        if tag == "ndarray":
            try:
                import numpy  # noqa: PLC0415 - numpy is optional; only arrays need it
            except ImportError as exc:
                raise EncodingError("a numpy array arrived but numpy is not installed") from exc
            blob = "blob" in obj
            data = _inbox(obj["blob"]) if blob else _b64decode(obj["base64"])
            if not (isinstance(obj["dtype"], str) and _DTYPE_RE.fullmatch(obj["dtype"])):
                raise ProtocolError(f"arrays of dtype {str(obj['dtype'])[:40]!r} are refused")
            dtype = numpy.dtype(obj["dtype"])
            if dtype.hasobject:
                raise ProtocolError("arrays of Python objects are refused")
            array = numpy.frombuffer(data, dtype=dtype).reshape(obj["shape"])
            return array if blob else array.copy()  # a blob's array is read-only, not copied
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


def max_values(max_size: int) -> int:
    """How many values a message within ``max_size`` bytes may hold (see :func:`_checked`).

    Counted as commas plus twice the arrays and objects, outside strings:
    one per 16 bytes of the limit (at least 10 000).
    """
    return max(max_size // 16, _FEWEST_VALUES)


_FEWEST_VALUES = 10_000


_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _values(data: bytes) -> tuple[int, int]:
    """(commas + 2 * brackets, brackets) of ``data``, counting inside strings too (cheap)."""
    brackets = data.count(b"[") + data.count(b"{")
    return data.count(b",") + 2 * brackets, brackets


def _checked(raw: bytes | str, max_size: int, what: str) -> Any:
    """Decode ``raw`` after the checks that need no decoding: its size, then how many values.

    A decoded value costs Python 30 to 90 bytes however short its JSON
    (``[]`` is 2 bytes, ``1,`` 2 bytes), so a message of nothing but tiny
    values could take 30 times its size to decode. Counting in the raw bytes
    first bounds the decoded message to a few times the limit. Strings are
    taken out of the count only when the quick count (which includes commas
    in strings) is over the limit, so long texts are not refused for their commas.
    """
    if len(raw) > max_size:
        raise MessageTooLargeError(f"{what} of {len(raw)} bytes exceeds the limit of {max_size}")
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) * 2 <= _FEWEST_VALUES:
        # Short: at most two values a byte, never too many; at most a bracket a byte,
        # so no need to count them below the nesting limit (most replies).
        if len(data) <= MAX_NESTING:
            return _loads(raw, len(data))
        return _loads(raw, data.count(b"[") + data.count(b"{"))
    values, brackets = _values(data)
    limit = max_values(max_size)
    if values > limit:
        values, _ = _values(_STRING_RE.sub(b'""', data))
        if values > limit:
            raise MessageTooLargeError(
                f"{what} holds about {values} values, over the limit of {limit} for messages"
                f" of at most {max_size} bytes (send many numbers as a numpy array)"
            )
    return _loads(raw, brackets)


def _loads(raw: bytes | str, brackets: int | None = None) -> Any:
    try:
        value = _orjson_loads(raw) if _orjson is not None else _NOT_PARSED
        if value is _NOT_PARSED:
            value = _DECODER.decode(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
            tagged = False  # the decoder's object_hook resolved them
        else:
            tagged = (raw.encode() if isinstance(raw, str) else raw).find(_TAG_KEY) != -1
        # Few brackets cannot nest deeply: the walk runs only for messages that might.
        if brackets is None:
            data = raw.encode() if isinstance(raw, str) else raw
            brackets = data.count(b"[") + data.count(b"{")
        if brackets > MAX_NESTING and _too_deep(value, MAX_NESTING):
            raise ProtocolError(f"message is nested too deeply (more than {MAX_NESTING} levels)")
        return _resolved(value) if tagged else value
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
    caller: str | None = None
    """Who makes the call (``user@host:pid``), shown while it runs; display only."""
    sent: int | None = None
    """When the request was sent: epoch ms on the Redis server's clock (protocol 3)."""


def encode_request(request: Request) -> bytes:
    """Encode a request for RPUSH onto the service list."""
    return _dumps(_request_message(request))


def _request_message(request: Request) -> dict[str, Any]:
    """The JSON object of ``request``: the optional keys only where set."""
    return request_message(
        request.name,
        request.args,
        request.kwargs,
        request.response_queue,
        request.id,
        request.deadline,
        request.lock,
        request.caller,
        request.sent,
    )


def request_message(  # noqa: PLR0917 - positional: a call per request, keywords cost twice
    name: str,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    response_queue: str,
    call_id: str | None = None,
    deadline: int | None = None,
    lock: str | None = None,
    caller: str | None = None,
    sent: int | None = None,
) -> dict[str, Any]:
    """The JSON object of a request with these fields (:class:`Request`'s), unset ones left out.

    A client encodes it (:func:`encode_plain_message`, else :func:`encode_blobbed_message`)
    and builds no :class:`Request` per call.
    """
    message: dict[str, Any] = {
        "function_call": {"name": name, "args": args, "kwargs": kwargs},
        "response_queue": response_queue,
        "protocol": PROTOCOL_VERSION,
    }
    if call_id is not None:
        message["id"] = call_id
    if deadline is not None:
        message["deadline"] = deadline
    if lock is not None:
        message["lock"] = lock
    if caller is not None:
        message["caller"] = caller
    if sent is not None:
        message["sent"] = sent
    return message


def salvage_response_queue(raw: bytes, queue: str) -> str | None:
    """Find a usable reply queue in a message too broken or too big to decode.

    Used only to answer a bad request with an error; the result still has to
    carry the service's reply prefix.
    """
    head = raw[:4096]
    # The key may come after the arguments (redisrpc's own encoder writes it there).
    match = _QUEUE_RE.search(head) or _QUEUE_RE.search(raw[-4096:])
    if match is not None:
        try:
            candidate = match.group(1).decode("utf-8")
        except UnicodeDecodeError:
            return None
        return candidate if candidate.startswith(reply_queue_prefix(queue)) else None
    # Not JSON at all (e.g. a pickled request of the original RedisRPC): the
    # first run of plain key characters that starts with the reply prefix.
    prefix = reply_queue_prefix(queue).encode()
    at = head.find(prefix)
    if at < 0:
        return None
    found = _PLAIN_QUEUE_RE.match(head, at)
    if found is None:
        return None
    candidate = found.group(0)
    # A pickle's binary string opcodes give the length; the next opcode may be a plain byte.
    if at >= 5 and head[at - 5] in b"XT":
        candidate = candidate[: int.from_bytes(head[at - 4 : at], "little")]
    elif at >= 2 and head[at - 2] in b"U\x8c":
        candidate = candidate[: head[at - 1]]
    text = candidate.decode("ascii")
    return text if len(text) > len(prefix) else None


def salvage_id(raw: bytes, max_size: int) -> str | None:
    """The call id of a request that could not be decoded, or None.

    A caller of protocol 2 or later takes only replies that carry its call's
    id, so an error reply without it (a request whose blobs expired or were
    refused, a malformed tagged value) would leave it waiting for its timeout.
    The JSON is parsed again with no tagged value resolved, only when it is
    within ``max_size`` (a message refused for its size is never parsed).
    """
    if len(raw) > max_size:
        return None
    try:
        # A view: orjson refuses a bytes subclass (a request that came with blobs is one).
        message = _orjson.loads(memoryview(raw)) if _orjson is not None else json.loads(raw)
    except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
        return None
    found = message.get("id") if isinstance(message, dict) else None
    return found if isinstance(found, str) and len(found) <= 128 else None


# Digits become "0" (a run of _LONG_NUMBER of them: a long number) and "{" becomes "[",
# so one translation serves both scans of a short request (see decode_request).
_DIGITS_AND_BRACES = bytes.maketrans(b"0123456789{", b"0000000000[")
_prefix_of = functools.lru_cache(maxsize=64)(reply_queue_prefix)  # no new string per request


def decode_request(raw: bytes, *, queue: str, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Request:
    """Decode and validate a request taken from ``queue``.

    Raises :class:`ProtocolError` (or :class:`MessageTooLargeError`) with a
    message fit to send back to the caller.
    """
    # The hot path: a short, plain request (no blobs, tags, long numbers or deep nesting)
    # of well-formed fields, in one frame; orjson gives exact types. Anything else, and
    # every refusal, takes _decode_request, which decides and words the error.
    size = len(raw)
    if type(raw) is bytes and _orjson is not None and size * 2 <= _FEWEST_VALUES:
        scanned = raw.translate(_DIGITS_AND_BRACES)
        if (
            size <= max_size
            and scanned.find(_ZEROS) == -1
            and raw.find(_TAG_KEY) == -1
            and (size <= MAX_NESTING or scanned.count(b"[") <= MAX_NESTING)
        ):
            try:
                message = _orjson.loads(raw)
            except _orjson.JSONDecodeError:
                message = None
            if type(message) is dict:
                response_queue = message.get("response_queue")
                call = message.get("function_call")
                if (
                    type(response_queue) is str
                    and type(call) is dict
                    and response_queue
                    and len(response_queue) <= _MAX_QUEUE_LEN
                    and response_queue.startswith(_prefix_of(queue))
                ):
                    name = call.get("name")
                    args = call.get("args")
                    kwargs = call.get("kwargs")
                    request_id = message.get("id")
                    deadline = message.get("deadline")
                    lock = message.get("lock")
                    if (
                        type(name) is str
                        and type(args) is list
                        and type(kwargs) is dict
                        and (
                            request_id is None
                            or (type(request_id) is str and len(request_id) <= 128)
                        )
                        and (deadline is None or type(deadline) is int)
                        and (lock is None or type(lock) is str)
                    ):
                        return _request(
                            message, name, args, kwargs, response_queue, request_id, deadline, lock
                        )
    return _decode_request(raw, queue, max_size)


def _decode_request(raw: bytes, queue: str, max_size: int) -> Request:
    """:func:`decode_request` for any message: decodes it with every check, or raises."""
    if isinstance(raw, Framed):
        with _receiving(raw):
            message = _checked(raw, max_size, "request")
    else:  # no blobs came: no context to set (the hot path)
        message = _checked(raw, max_size, "request")
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
    return _request(message, name, args, kwargs, response_queue, request_id, deadline, lock)


def _request(  # noqa: PLR0917 - positional on every request's hot path: keywords cost twice
    message: dict[str, Any],
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    response_queue: str,
    request_id: str | None,
    deadline: int | None,
    lock: str | None,
) -> Request:
    """The checked fields, and the optional ones that are never refused, as a Request.

    Exact types: decoded JSON has no subclasses of int but bool, which is no
    protocol version or timestamp. Positional, in the field order: every
    request's hot path, half the cost of keywords.
    """
    protocol = message.get("protocol", 1)
    caller = message.get("caller")
    sent = message.get("sent")
    return Request(
        name,
        args,
        kwargs,
        response_queue,
        request_id,
        deadline,
        lock,
        protocol if type(protocol) is int else 1,
        caller[:200] if type(caller) is str else None,
        sent if type(sent) is int else None,
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
    interim: str | None = None
    """``"progress"`` (value: done, total, message) or ``"item"`` (value: a stream item);
    None for the final reply."""
    stream: bool = False
    """A final reply that ends a stream (its value is the generator's return value)."""
    extra: dict[str, Any] | None = None
    """Optional reply keys of later extensions (see :data:`REPLY_EXTENSIONS`), as sent."""


def _value_message(reply: Reply) -> dict[str, Any]:
    """The JSON object of a successful reply (``reply.error`` is None), before encoding."""
    message: dict[str, Any] = {"return_value": reply.value, "protocol": PROTOCOL_VERSION}
    if reply.id is not None:
        message["id"] = reply.id
    if reply.stream:
        message["stream"] = True
    if reply.extra:
        message.update(reply.extra)
    return message


def encode_reply(reply: Reply) -> bytes:
    """Encode a reply for RPUSH onto the caller's response queue.

    A value that cannot be encoded turns into an error reply naming its type,
    so the caller always gets an answer.
    """
    message: dict[str, Any]
    if reply.error is None:
        message = _value_message(reply)
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


def decode_reply(raw: bytes | str, *, max_size: int | None = None) -> Reply:
    """Decode a reply; version 1 replies carry only ``return_value`` or ``exception``.

    With ``max_size``, a reply longer than that many bytes, or holding more
    than :func:`max_values` values, raises :class:`MessageTooLargeError`
    before any decoding (no memory spent on it).
    """
    if (
        type(raw) is bytes
        and len(raw) <= MAX_NESTING
        and (max_size is None or len(raw) <= max_size)
        and _orjson is not None
    ):
        # A short reply with no blobs (most replies), read as _checked and _loads read it
        # with less around it: so short, it holds too few values to count and too few
        # brackets to nest deeply. Values that are all strings, integers, booleans or
        # nulls need no digit scan (orjson reads only integers beyond 64 bits otherwise
        # than the json module: as floats) and hold no tag; other values get both.
        try:
            message = _orjson.loads(raw)
        except _orjson.JSONDecodeError:
            message = _NOT_PARSED
        if (
            type(message) is not dict
            or TAG in message
            or (
                not _PLAIN_VALUES.issuperset(map(type, message.values()))
                and (_has_long_number(raw) or raw.find(_TAG_KEY) != -1)
            )
        ):
            message = _loads(raw, len(raw))  # as _checked would (and it reports what is wrong)
    elif isinstance(raw, Framed):
        with _receiving(raw):
            message = _loads(raw) if max_size is None else _checked(raw, max_size, "reply")
    else:  # no blobs came: no context to set
        message = _loads(raw) if max_size is None else _checked(raw, max_size, "reply")
    if not isinstance(message, dict):
        raise ProtocolError(f"a reply must be a JSON object, not {type(message).__name__}")
    reply_id = message.get("id")
    reply_id = reply_id if isinstance(reply_id, str) else None
    if "return_value" not in message and "exception" not in message:
        for kind in _INTERIM_KINDS:
            if kind in message:
                return Reply(value=message[kind], id=reply_id, interim=kind)
        raise ProtocolError("a reply needs 'return_value' or 'exception'")
    extra: dict[str, Any] | None = None
    if not message.keys().isdisjoint(REPLY_EXTENSIONS):  # most replies have none
        extra = {key: message[key] for key in REPLY_EXTENSIONS if key in message}
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
    if "return_value" not in message:  # "exception": null alone
        raise ProtocolError("a reply needs 'return_value' or 'exception'")
    stream = message.get("stream") is True
    # Positional (value, error, id, interim, stream, extra): half the cost of keywords.
    return Reply(message["return_value"], None, reply_id, None, stream, extra)


# -- interim messages and cancellation (protocol 3) ----------------------------

_INTERIM_KINDS = ("progress", "item")


def encode_progress(call_id: str | None, done: float, total: float | None, message: str) -> bytes:
    """An interim progress message for a running call (only to protocol 3 callers)."""
    body = {"done": done, "total": total, "message": message}
    return _dumps({"progress": body, "id": call_id, "protocol": PROTOCOL_VERSION})


def encode_item(call_id: str | None, value: Any) -> bytes:
    """One item of a streamed result (only to protocol 3 callers)."""
    return _dumps({"item": value, "id": call_id, "protocol": PROTOCOL_VERSION})


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
    plain = _value_message(reply)
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
    try:
        try:
            # The same message, encoded again with the fallback; a caller's dict that uses
            # the tag key is escaped, as _dumps does, so it never passes for a tagged value.
            message = _escape(plain, [False])
            _restart()  # blobs (protocol 4) of the attempt above are dropped
            text = encoder.encode(message)
        except ValueError as exc:
            if "Out of range float" not in str(exc):
                raise
            _restart()
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


# -- faster JSON: orjson, where installed (the "fast" extra) ------------------

try:
    import orjson as _orjson_module
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson: Any = None
else:
    _orjson = _orjson_module

# datetime and dataclasses go to _encode_default (refused), as with the json module.
_ORJSON_OPTIONS = getattr(_orjson, "OPT_PASSTHROUGH_DATETIME", 0) | getattr(
    _orjson, "OPT_PASSTHROUGH_DATACLASS", 0
)
_NULL = b"null"
_NOT_PARSED = object()


def _orjson_bytes(obj: Any) -> bytes | None:
    """orjson's encoding of ``obj``, or None where the json module must decide.

    orjson writes NaN and infinities as ``null``; a message with no ``null``
    at all certainly had none (one C scan), nor one whose nulls are all None
    (:func:`_finite`); otherwise the json module encodes it again and tags
    them. Whatever orjson refuses (integers over 64 bits, dict keys that are
    not strings, lone surrogates, deep nesting) is also
    left to the json module, so both give the same messages and errors.
    """
    _restart()
    try:
        data: bytes = _orjson.dumps(obj, default=_encode_default, option=_ORJSON_OPTIONS)
    except _orjson.JSONEncodeError as exc:
        if isinstance(exc.__cause__, RedisRPCError):
            raise exc.__cause__ from None  # raised by _encode_default (a refusal, a limit)
        return None
    return None if data.find(_NULL) != -1 and not _finite(obj) else data


_LONG_NUMBER = 19  # digits in a row that may be an integer beyond 64 bits
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_ZEROS = b"0" * _LONG_NUMBER
_SCAN_CHUNK = 1 << 20  # the digit scan copies at most this much at a time


def _has_long_number(data: bytes) -> bool:
    """Whether ``data`` holds :data:`_LONG_NUMBER` digits in a row (anywhere, strings too).

    Digits become ``0`` and everything else stays as it is, then one C
    substring search: several times faster than a regular expression, which
    tries a match at every byte (5 us for a 250-byte request). Long messages
    are scanned in overlapping chunks, so the copy stays small.
    """
    if len(data) <= _SCAN_CHUNK:
        return data.translate(_DIGITS_AS_ZERO).find(_ZEROS) != -1
    step = _SCAN_CHUNK - _LONG_NUMBER
    return any(
        data[at : at + _SCAN_CHUNK].translate(_DIGITS_AS_ZERO).find(_ZEROS) != -1
        for at in range(0, len(data), step)
    )


def _orjson_loads(raw: bytes | str) -> Any:
    """orjson's decoding of ``raw``, or _NOT_PARSED: the json module then decides (and reports).

    orjson reads integers beyond 64 bits as floats; a message with 19 digits
    in a row anywhere is left to the json module, which keeps them exact.
    """
    if _has_long_number(raw.encode() if isinstance(raw, str) else raw):
        return _NOT_PARSED
    try:
        return _orjson.loads(raw)
    except _orjson.JSONDecodeError:
        return _NOT_PARSED


def _resolved(obj: Any) -> Any:
    """Replace tagged values, innermost first, as the json module's object_hook does."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, (dict, list)):
                obj[key] = _resolved(value)
        return _decode_tag(obj) if TAG in obj else obj
    if isinstance(obj, list):
        for i, value in enumerate(obj):
            if isinstance(value, (dict, list)):
                obj[i] = _resolved(value)
    return obj


# -- the binary side channel (protocol 4) --------------------------------------

BLOB_VERSION = 4
"""The first version whose peers send bytes and arrays as raw blobs (PROTOCOL.md, "Blobs")."""

DEFAULT_MAX_BLOB_SIZE = 1024 * 1024 * 1024
"""The most bytes of blobs one message may carry (1 GiB), beside its JSON's own limit."""

_MAX_BLOBS = 100_000
_HEADER_RE = re.compile(
    rb'\{\s*"blobs"\s*:\s*([0-9]{1,9})\s*(?:,\s*"blob_key"\s*:\s*"([^"\\]{1,400})")?'
)


class Framed(bytes):
    """A message's JSON (the bytes themselves) with the raw blobs that travel after it.

    ``blobs`` are the message's blobs in order; a request's also names the
    key they are written to (``key``) and how long it lives (``ttl_ms``).
    A plain ``bytes`` message is a message with no blobs.
    """

    blobs: list[Any]
    key: str | None
    ttl_ms: int

    def __new__(
        cls, data: bytes, blobs: Sequence[Any], *, key: str | None = None, ttl_ms: int = 0
    ) -> Framed:
        message = super().__new__(cls, data)
        message.blobs = list(blobs)
        message.key = key
        message.ttl_ms = ttl_ms
        return message


class _Sink:
    """Where an encoding puts its bytes and arrays: blobs, or base64 within a size limit."""

    __slots__ = ("blobs", "limit", "total")

    def __init__(self, blobs: list[Any] | None, limit: int) -> None:
        self.blobs = blobs
        self.limit = limit
        self.total = 0

    def take(self, data: memoryview) -> int | None:
        """The blob index of ``data``, or None: encode it as base64 (a peer before protocol 4).

        Either way the size is checked first, so nothing too large is ever encoded.
        """
        size = data.nbytes if self.blobs is not None else (data.nbytes + 2) // 3 * 4
        self.total += size
        if self.total > self.limit:
            what = "blobs" if self.blobs is not None else "base64 data"
            raise MessageTooLargeError(
                f"message {what} of at least {self.total} bytes exceed the limit of {self.limit}"
            )
        if self.blobs is None:
            return None
        self.blobs.append(data)
        return len(self.blobs) - 1


def _restart() -> None:
    """An encoding starts (again, e.g. to tag NaN): forget the blobs of an earlier attempt."""
    sink = _SINK.get()
    if sink is not None:
        sink.total = 0
        if sink.blobs is not None:
            sink.blobs.clear()


_SINK: ContextVar[_Sink | None] = ContextVar("redisrpc_sink", default=None)
_INBOX: ContextVar[Sequence[Any] | None] = ContextVar("redisrpc_inbox", default=None)


class _sending:  # noqa: N801 - used like a function: `with _sending(...) as blobs:`
    """While encoding, bytes and arrays go to the returned list (``binary``) or base64.

    Either way within ``limit`` bytes, checked before anything is encoded.

    A class rather than a ``@contextmanager`` generator: it runs around every
    request and reply, and a generator-based context manager costs several
    times as much.
    """

    __slots__ = ("blobs", "sink", "token")

    def __init__(self, binary: bool, limit: int) -> None:
        self.blobs: list[Any] = []
        self.sink = _Sink(self.blobs if binary else None, limit)
        self.token: Token[_Sink | None] | None = None

    def __enter__(self) -> list[Any]:
        self.token = _SINK.set(self.sink)
        return self.blobs

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            _SINK.reset(self.token)


@contextlib.contextmanager
def _receiving(raw: bytes | str) -> Iterator[None]:
    """While decoding ``raw``: its blobs (if any) are what blob tags refer to."""
    blobs = raw.blobs if isinstance(raw, Framed) else None
    if blobs is None:
        yield
        return
    token = _INBOX.set(blobs)
    try:
        yield
    finally:
        _INBOX.reset(token)


def _inbox(index: Any) -> Any:
    blobs = _INBOX.get()
    if blobs is None:
        raise ProtocolError("a blob is referred to, but none came with the message")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(blobs):
        raise ProtocolError(f"no blob {str(index)[:20]} among the {len(blobs)} that came")
    return blobs[index]


def _with_header(data: bytes, blobs: list[Any], **more: Any) -> bytes:
    """``{"blobs":N,...`` first, so a reader frames the message without parsing it."""
    head = f'{{"blobs":{len(blobs)}'
    for name, value in more.items():
        head += f',"{name}":{json.dumps(value)}'
    return (head + ",").encode() + data[1:]


def encode_framed_request(
    request: Request,
    *,
    binary: bool,
    max_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
    key: str,
    ttl_ms: int,
) -> bytes:
    """Encode a request; with ``binary`` (a protocol 4 server) its bytes and arrays as blobs.

    The blobs go to the list ``key`` (under the reply prefix), written in the
    same round trip as the request, and expire after ``ttl_ms``. Without
    ``binary``, bytes and arrays are base64 in the JSON, and refused before
    they are encoded when they would not fit ``max_size``. (A client encodes
    the request's JSON object, :func:`request_message`, the same two ways.)
    """
    message = _request_message(request)
    data = encode_plain_message(message)
    if data is not None:
        return data
    return encode_blobbed_message(message, binary, max_size, max_blob_size, key, ttl_ms)


encode_plain_message = _plain_dumps
"""A message's JSON when it holds JSON's own types only (most messages), else None.

Then :func:`encode_blobbed_message` encodes it: a caller that tries this first
works out the blob list's key and lifetime only for the messages that may need them.
"""


def encode_blobbed_message(  # noqa: PLR0917 - positional: a client's call
    message: dict[str, Any],
    binary: bool,
    max_size: int,
    max_blob_size: int,
    key: str,
    ttl_ms: int,
) -> bytes:
    """A message :func:`encode_plain_message` refused: bytes and arrays as blobs with ``binary``.

    See :func:`encode_framed_request` for the arguments.
    """
    with _sending(binary, max_blob_size if binary else max_size) as blobs:
        data = _dumps(message)
    if not blobs:
        return data
    return Framed(_with_header(data, blobs, blob_key=key), blobs, key=key, ttl_ms=ttl_ms)


def encode_framed_reply(
    reply: Reply,
    *,
    binary: bool,
    max_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
    encode: Callable[[Reply], bytes] = encode_reply,
) -> bytes:
    """Encode a reply; with ``binary`` (a protocol 4 caller) its bytes and arrays as blobs.

    The blobs are pushed right after the JSON, in the same RPUSH. A value too
    large for the limits becomes a ``MessageTooLargeError`` error reply,
    decided before the large part is encoded. ``encode`` is the reply
    encoder (the server's, which turns values JSON cannot hold into handles).
    """
    if reply.error is None:
        plain = _plain_dumps(_value_message(reply))
        if plain is not None:
            # JSON's own types only (most replies): no blobs, handles or tags, so every
            # encoder gives these bytes; one call, without setting the blob sink.
            return plain
    try:
        with _sending(binary, max_blob_size if binary else max_size) as blobs:
            data = encode(reply)
    except MessageTooLargeError as exc:
        error = ErrorInfo(
            OWN_ERROR_PREFIX + "MessageTooLargeError", f"the reply is too large: {exc}"
        )
        return encode_reply(Reply(error=error, id=reply.id, extra=reply.extra))
    if not blobs:
        return data
    return Framed(_with_header(data, blobs), blobs)


def encode_value_reply(value: Any, call_id: str | None) -> bytes | None:
    """The reply to a call that returned ``value`` and printed nothing, when it is plain JSON.

    The bytes :func:`encode_framed_reply` gives for ``Reply(value, id=call_id)``,
    built with no Reply; None when ``value`` needs more than JSON's own types
    (bytes, arrays, handles, NaN...): encode_framed_reply decides then.
    """
    message: dict[str, Any] = {"return_value": value, "protocol": PROTOCOL_VERSION}
    if call_id is not None:
        message["id"] = call_id
    return _plain_dumps(message)


def encode_framed_item(
    call_id: str | None,
    value: Any,
    *,
    binary: bool,
    max_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
) -> bytes:
    """One item of a streamed result; with ``binary`` its bytes and arrays as blobs.

    Raises MessageTooLargeError (before encoding the large part) when over the limits.
    """
    with _sending(binary, max_blob_size if binary else max_size) as blobs:
        data = encode_item(call_id, value)
    return Framed(_with_header(data, blobs), blobs) if blobs else data


def blob_header(raw: bytes) -> tuple[int, str | None]:
    """How many blobs follow the message ``raw``, and (a request's) the key they are under.

    Read from the message's first key (``{"blobs":N``), without parsing it.
    """
    match = _HEADER_RE.match(raw)
    if match is None:
        return 0, None
    count = min(int(match.group(1)), _MAX_BLOBS)
    key = match.group(2)
    return count, None if key is None else key.decode("utf-8", "replace")


def blob_count(raw: bytes) -> int:
    """How many blobs follow the message ``raw`` on its list (0 for plain messages)."""
    return blob_header(raw)[0] if raw.find(b'"blobs"', 0, 16) != -1 else 0


def framed(elements: Sequence[bytes]) -> tuple[list[bytes], int]:
    """Group elements popped from a reply list into messages, each with its blobs.

    Returns the messages (a :class:`Framed` for one with blobs) and how many
    blobs the last one still lacks: a message and its blobs are pushed in one
    RPUSH, so they are there, and the reader pops that many more.
    """
    messages: list[bytes] = []
    missing = 0
    i = 0
    while i < len(elements):
        raw = elements[i]
        count = blob_count(raw)
        if count == 0:
            messages.append(raw)
            i += 1
            continue
        blobs = elements[i + 1 : i + 1 + count]
        messages.append(Framed(raw, blobs))
        missing = count - len(blobs)
        i += 1 + count
    return messages, missing
