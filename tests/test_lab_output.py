"""Remote output: prints, warnings and (opt-in) log records come back with the reply, in order."""

from __future__ import annotations

import logging
import secrets
import sys
import threading
import warnings
from typing import Any

import pytest

import redisrpc
from redisrpc.client.output import RemoteWarning, show_output


class Noisy:
    """Prints, warns and logs."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=10)

    def chatty(self, n: int) -> int:
        """Print to both streams and warn, in an order the caller must see."""
        print(f"first {n}")
        print(f"error {n}", file=sys.stderr)
        warnings.warn(f"careful {n}", UserWarning, stacklevel=1)
        print(f"last {n}")
        return n

    def fails(self) -> None:
        """Print, then raise: the output still comes back."""
        print("about to fail")
        raise ValueError("broken")

    def together(self, tag: str) -> str:
        """Print, wait for the other call to print too, print again."""
        print(f"{tag}-1")
        self.barrier.wait()
        print(f"{tag}-2")
        return tag

    def logs(self) -> None:
        """Log at two levels."""
        logging.getLogger("noisy").debug("hidden detail")
        logging.getLogger("noisy").info("calibrated")


def _reply_output(server: redisrpc.Server, name: str, *args: Any) -> Any:
    from redisrpc.core.protocol import Request, decode_reply, encode_request  # noqa: PLC0415

    raw = encode_request(Request(name, list(args), {}, "noisy:rpc:1", secrets.token_hex(8)))
    _, data = server.handle(raw)
    assert data is not None
    return decode_reply(data).extra


def test_prints_and_warnings_come_back_in_order_marked_remote(
    r: Any, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(Noisy(), "noisy")
    extra = _reply_output(server, "chatty", 1)
    kinds = [event[0] for event in extra["output"]]
    assert kinds == ["stdout", "stderr", "warning", "stdout"]
    assert extra["output"][2][1]["category"] == "UserWarning"
    proxy = redisrpc.Client(r, "noisy")
    capsys.readouterr()
    with pytest.warns(UserWarning, match=r"\[noisy\] careful 2"):
        assert proxy.chatty(2) == 2
    out, err = capsys.readouterr()
    assert "[noisy] first 2\n" in out and "[noisy] last 2\n" in out
    assert out.index("[noisy] first 2") < out.index("[noisy] last 2")
    assert "[noisy] error 2\n" in err


def test_output_of_a_failing_call_comes_back_before_its_error(
    r: Any, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(Noisy(), "noisy")
    proxy = redisrpc.Client(r, "noisy")
    capsys.readouterr()
    with pytest.raises(ValueError, match="broken"):
        proxy.fails()
    assert "[noisy] about to fail" in capsys.readouterr().out


def test_concurrent_calls_in_worker_threads_keep_their_own_output(r: Any, serve: Any) -> None:
    server = serve(Noisy(), "noisy", workers=2)
    results: dict[str, Any] = {}

    def run(tag: str) -> None:
        results[tag] = _reply_output(server, "together", tag)

    threads = [threading.Thread(target=run, args=(tag,)) for tag in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert results["a"]["output"] == [["stdout", "a-1\na-2\n"]]
    assert results["b"]["output"] == [["stdout", "b-1\nb-2\n"]]


def test_log_records_come_back_only_when_asked_for(
    r: Any, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(Noisy(), "noisy")
    assert _reply_output(server, "logs") is None  # not asked: nothing travels
    server.dispatcher.log_level = logging.INFO
    extra = _reply_output(server, "logs")
    assert extra["output"] == [
        ["log", {"level": "INFO", "logger": "noisy", "message": "calibrated"}]
    ]
    proxy = redisrpc.Client(r, "noisy")
    with caplog.at_level(logging.INFO, logger="redisrpc.remote.noisy"):
        proxy.logs()
    assert any("calibrated" in rec.getMessage() for rec in caplog.records)


def test_a_silent_call_sends_no_output_key(r: Any, serve: Any) -> None:
    server = serve(Noisy(), "noisy")
    server.dispatcher.log_level = None
    assert _reply_output(server, "__ping__") is None


def test_unknown_warning_categories_become_remote_warnings() -> None:
    event = ["warning", {"category": "VisaIOWarning", "module": "pyvisa", "message": "slow bus"}]
    with pytest.warns(RemoteWarning, match=r"\[lab\] VisaIOWarning: slow bus"):
        show_output("lab", [event, ["nonsense"], "junk"])
