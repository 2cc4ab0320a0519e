"""The exception tree and remote exceptions that are also builtin exceptions."""

from __future__ import annotations

import builtins
import pickle
import traceback

import pytest

import redisrpc
from redisrpc import errors
from redisrpc.errors import RemoteException, RemoteTraceback, remote_exception


def test_every_error_derives_from_the_base_and_is_exported():
    """Each public error class is a RedisRPCError and is exported from redisrpc."""
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and name != "RemoteTraceback":
            assert issubclass(obj, redisrpc.RedisRPCError), name
            assert getattr(redisrpc, name) is obj, name


def test_errors_are_also_the_matching_builtin_types():
    """Code that catches builtin exceptions keeps working with ours."""
    assert issubclass(redisrpc.TimeoutException, TimeoutError)
    assert issubclass(redisrpc.RedisConnectionError, ConnectionError)
    assert issubclass(redisrpc.ProtocolError, ValueError)
    assert issubclass(redisrpc.EncodingError, TypeError)
    assert issubclass(redisrpc.MessageTooLargeError, redisrpc.ProtocolError)


def test_tree_drawing_lists_every_class():
    """The module docstring's tree names every exception class in the module."""
    for name in errors.__all__:
        if isinstance(getattr(errors, name), type):
            assert name in errors.__doc__, name


def test_timeout_and_locked_carry_their_facts():
    """TimeoutException.started and LockedError.holder keep what they were given."""
    assert redisrpc.TimeoutException("t", started=False).started is False
    assert redisrpc.TimeoutException("t").started is None
    assert redisrpc.LockedError("l", holder={"who": "me"}).holder == {"who": "me"}
    assert redisrpc.LockedError("l").holder == {}


def test_remote_builtin_is_both_remote_and_builtin():
    """A remote ZeroDivisionError is caught by `except ZeroDivisionError` and by RemoteException."""
    exc = remote_exception("ZeroDivisionError", "division by zero", "Traceback...", "calc@h:1")
    with pytest.raises(ZeroDivisionError):
        raise exc
    assert isinstance(exc, RemoteException) and isinstance(exc, redisrpc.RedisRPCError)
    assert type(exc).__name__ == "RemoteZeroDivisionError"
    assert (exc.remote_type, exc.message, exc.server) == (
        "ZeroDivisionError",
        "division by zero",
        "calc@h:1",
    )
    assert str(exc) == "division by zero" and exc.args == ("division by zero",)


def test_every_builtin_exception_name_gives_a_usable_exception():
    """No builtin name (MemoryError, UnicodeDecodeError, OSError...) breaks remote_exception."""
    names = [
        n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, Exception)
    ]
    for name in names:
        exc = remote_exception(name, "msg", "tb", "srv")
        assert isinstance(exc, RemoteException), name
        assert str(exc) == "msg", name
        builtin = getattr(builtins, name)
        if type(exc) is not RemoteException:
            assert isinstance(exc, builtin), name
    assert isinstance(remote_exception("UnicodeDecodeError", "m"), UnicodeDecodeError)
    assert isinstance(remote_exception("FileNotFoundError", "m"), OSError)


def test_non_builtin_and_hostile_type_names_give_plain_remote_exceptions():
    """Unknown type names are never looked up beyond the builtins, let alone evaluated."""
    for name in [
        "__import__('os').system('x')",
        "mod.class.Error",
        "a" * 300,
        "SystemExit",
        "KeyboardInterrupt",
        "object",
        "",
    ]:
        exc = remote_exception(name, "m")
        assert type(exc) is RemoteException, name
        assert exc.remote_type == name


def test_remote_type_names_become_classes_named_after_them():
    """An instrument's own error shows under its remote name and module, as a RemoteException."""
    name = "redisrpc.sim.instruments.OverCurrentError"
    exc = remote_exception(name, "channel 1 tripped", "tb", "psu@lab:1")
    cls = type(exc)
    assert issubclass(cls, RemoteException) and cls is not RemoteException
    assert (cls.__name__, cls.__qualname__, cls.__module__) == (
        "OverCurrentError",
        "OverCurrentError",
        "redisrpc.sim.instruments",
    )
    assert not isinstance(exc, RuntimeError)  # nothing of the real class is imported
    assert exc.remote_type == name and str(exc) == "channel 1 tripped"
    last = traceback.format_exception_only(exc)[-1]
    assert last == f"{name}: channel 1 tripped\n"
    assert type(remote_exception(name, "again")) is cls
    back = pickle.loads(pickle.dumps(exc))
    assert type(back).__name__ == "OverCurrentError" and back.remote_type == name


def test_remote_class_cache_stays_bounded_and_evicted_names_behave_the_same():
    """10,000 distinct remote type names keep at most the bound of classes; builtins keep theirs."""
    key_error = type(remote_exception("KeyError", "k"))
    first = type(remote_exception("lab.Error0", "m"))
    for i in range(10_000):
        remote_exception(f"lab.Error{i}", "m")
    assert len(errors._REMOTE_CLASSES) == errors._REMOTE_CLASS_LIMIT
    again = type(remote_exception("lab.Error0", "m"))  # evicted long ago: made anew
    assert again is not first and again.__name__ == first.__name__ == "Error0"
    assert issubclass(again, RemoteException)
    assert len(errors._REMOTE_CLASSES) == errors._REMOTE_CLASS_LIMIT
    exc = remote_exception("KeyError", "k")
    assert type(exc) is key_error and isinstance(exc, KeyError)
    with pytest.raises(KeyError):
        raise exc


def test_remote_classes_are_made_once_per_name():
    """The same remote type name always maps to the same class."""
    assert type(remote_exception("KeyError", "a")) is type(remote_exception("KeyError", "b"))


def test_remote_traceback_is_framed_and_marked_remote():
    """format_exception shows the remote traceback once, framed and marked remote, above ours."""
    remote_tb = (
        "Traceback (most recent call last):\n"
        '  File "calc.py", line 3, in div\n'
        "ZeroDivisionError: x\n"
    )
    exc = remote_exception("ZeroDivisionError", "x", remote_tb, "calc@lab:7")
    assert isinstance(exc.__cause__, RemoteTraceback)
    text = "".join(traceback.format_exception(exc))
    assert text.startswith(
        "redisrpc.errors.RemoteTraceback: from calc@lab:7 (most recent call last):\n"
        '  File "calc.py", line 3, in div\n'
        "ZeroDivisionError: x\n"
        "──────────── end of remote traceback ────────────\n"
    )
    assert text.count("RemoteTraceback") == 1 and text.count("calc@lab:7") == 1
    assert text.count("Traceback (most recent call last)") == 0  # not raised: no local part
    assert text.index("end of remote traceback") < text.index("RemoteZeroDivisionError: x")
    other = RemoteTraceback("not a Python traceback", server="")
    assert str(other).startswith("from the server:\nnot a Python traceback\n")


def test_no_remote_traceback_means_no_cause():
    """Without a remote traceback nothing is chained."""
    assert remote_exception("KeyError", "m").__cause__ is None


def test_remote_exceptions_pickle():
    """A RemoteException survives pickling (multiprocessing, ipyparallel)."""
    exc = remote_exception("KeyError", "k", "tb", "s")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and back.remote_traceback == "tb" and back.server == "s"
