"""The ``redisrpc`` command line, end to end through the installed console script."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from typing import Any

import pytest
from conftest import (
    CLI_SCRIPT,
    PYTHON,
    ROOT,
    RedisServer,
    free_port,
    python_env,
    read_until,
    run_cli,
    wait_for,
)

import redisrpc
from redisrpc.testing import TLSFiles


def one_error_line(proc: Any) -> str:
    """The single stderr line of a failed command (no traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("redisrpc: error: ")
    assert "Traceback" not in proc.stderr
    return str(lines[0])


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the console script in the background, output on a text pipe."""
    return subprocess.Popen(
        [str(CLI_SCRIPT), *args],
        env=env or python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def test_list_without_servers(redis_url):
    """list on an empty registry says so and succeeds."""
    proc = run_cli("list")
    assert proc.returncode == 0, proc.stderr
    assert "no live servers" in proc.stdout


def test_list_shows_live_servers(spawn_server, redis_url):
    """list prints one aligned row per service with class, instances, host:pid and queue."""
    a = spawn_server("servable:Thing", "alpha")
    spawn_server("servable:Thing", "beta")
    spawn_server("servable:Thing", "beta")
    proc = run_cli("list")
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.strip().splitlines()
    assert header.split() == [
        "NAME",
        "CLASS",
        "INSTANCES",
        "HOST:PID",
        "UPTIME",
        "QUEUE",
        "LAST",
        "SEEN",
        "RUNNING",
    ]
    assert [row.split()[:3] for row in rows] == [["alpha", "Thing", "1"], ["beta", "Thing", "2"]]
    assert f":{a.pid}" in rows[0]
    assert "+1 more" in rows[1]
    assert len({row.index("Thing") for row in rows}) == 1  # aligned columns
    listed = json.loads(run_cli("list", "--json").stdout)
    assert [(s["name"], len(s["instances"])) for s in listed] == [("alpha", 1), ("beta", 2)]


def test_describe_shows_doc_signatures_and_properties(spawn_server):
    """describe prints the class doc, full method signatures with docstrings, and properties."""
    spawn_server("servable:Thing", "thing")
    proc = run_cli("describe", "thing")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Thing" in out and "A small object for child-process tests." in out
    assert "incr(by: int = 1) -> int" in out
    assert "Add by to the total and return it." in out  # reST literal shown as its text
    assert "``" not in out
    assert "echo(value: object, *, twice: bool = False) -> object" in out
    assert "total: int  (read-only)" in out
    assert "Instances (1" in out
    raw = json.loads(run_cli("describe", "thing", "--json").stdout)
    assert raw["class"] == "Thing" and raw["registered"] is True


def test_call_prints_json_results(spawn_server):
    """call parses JSON literals (plain words are strings), --kw, and prints JSON."""
    spawn_server("servable:Thing", "thing")
    assert json.loads(run_cli("call", "thing", "incr", "5").stdout) == 5
    assert json.loads(run_cli("call", "thing", "incr", "--kw", "by=2").stdout) == 7
    assert json.loads(run_cli("call", "thing", "total").stdout) == 7
    echoed = run_cli("call", "thing", "echo", '{"a": [1, 2.5, null]}', "--kw", "twice=true")
    assert json.loads(echoed.stdout) == [{"a": [1, 2.5, None]}] * 2
    assert json.loads(run_cli("call", "thing", "echo", "hello").stdout) == "hello"
    assert json.loads(run_cli("call", "thing", "echo", "-3").stdout) == -3


def test_negative_numbers_in_exponent_form_are_arguments_not_options(spawn_server):
    """-1e3 and -Infinity are JSON literals: call and set take them, as they take -3."""
    spawn_server("servable:Thing", "thing")
    for literal, value in [("-1e3", -1000.0), ("-2.5E-3", -0.0025), ("-Infinity", -float("inf"))]:
        proc = run_cli("call", "thing", "echo", literal)
        assert proc.returncode == 0, (literal, proc.stderr)
        assert json.loads(proc.stdout) == value
        proc = run_cli("set", "thing", "label", literal)
        assert proc.returncode == 0, (literal, proc.stderr)
        assert json.loads(run_cli("call", "thing", "label").stdout) == value


def test_call_remote_error_prints_type_message_and_traceback(spawn_server):
    """A remote exception exits 1 and shows the remote type, message and traceback."""
    spawn_server("servable:Thing", "thing")
    proc = run_cli("call", "thing", "fail", "kaput")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" in proc.stderr and "servable.py" in proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("redisrpc: error: remote ValueError: kaput")
    )


def test_bad_arguments_exit_2_with_one_line(spawn_server):
    """Unknown methods, wrong arity, bad --kw and private names: one line, exit 2."""
    spawn_server("servable:Thing", "thing")
    for args, text in [
        (("call", "thing", "nope"), "no method 'nope'"),
        (("call", "thing", "incr", "1", "2"), "bad arguments for thing.incr"),
        (("call", "thing", "incr", "--kw", "nokey"), "--kw expects key=value"),
        (("call", "thing", "_secret"), "private"),
        (("call", "thing", "total", "1"), "property"),
    ]:
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert text in one_error_line(proc)
    usage = run_cli("call")
    assert usage.returncode == 2 and "usage:" in usage.stderr
    assert run_cli().returncode == 2


def test_unknown_service_exits_3(redis_url):
    """A service nobody serves is reported in one line with exit 3."""
    proc = run_cli("call", "ghost", "anything")
    assert proc.returncode == 3
    assert "unknown service 'ghost'" in one_error_line(proc)


def test_unreachable_redis_exits_3(redis_url):
    """A Redis that does not answer, from --url or REDIS_URL: one line, exit 3."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    for command in (("list",), ("describe", "x"), ("call", "x", "y"), ("serve", "servable:Thing")):
        proc = run_cli("--url", dead, *command)
        assert proc.returncode == 3, (command, proc.stderr)
        assert "cannot talk to Redis" in one_error_line(proc)
    env = {**python_env(), "REDIS_URL": dead}
    assert run_cli("list", env=env).returncode == 3


def test_url_option_beats_redis_url(spawn_server, redis_url):
    """--url (before or after the command) wins over REDIS_URL."""
    spawn_server("servable:Thing", "thing")
    env = {**python_env(), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    assert "thing" in run_cli("--url", redis_url, "list", env=env).stdout
    assert "thing" in run_cli("list", "--url", redis_url, env=env).stdout


def test_password_in_url(spawn_server):
    """A username/password URL reaches a Redis that requires auth; a wrong one exits 3."""
    secured = RedisServer("--requirepass", "s3cret").start()
    try:
        url = f"redis://default:s3cret@127.0.0.1:{secured.port}/0"
        spawn_server("servable:Thing", "thing", url=url)
        assert json.loads(run_cli("--url", url, "call", "thing", "incr", "3").stdout) == 3
        wrong = run_cli("--url", f"redis://default:nope@127.0.0.1:{secured.port}/0", "list")
        assert wrong.returncode == 3
        line = one_error_line(wrong)
        assert "nope" not in line and "s3cret" not in line
    finally:
        secured.close()


def test_serve_a_class_and_stop_it_with_sigterm(redis_url):
    """serve module:Class registers, answers calls, and deregisters on SIGTERM (exit 0)."""
    proc = start("serve", "servable:Thing", "--name", "served")
    try:
        read_until(proc, "serving Thing as 'served'")
        wait_for(lambda: "served" in {s.name for s in redisrpc.discover(redis_url)}, timeout=20)
        assert json.loads(run_cli("call", "served", "pid").stdout) == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert redisrpc.discover(redis_url) == []
    finally:
        proc.kill()
        proc.wait()


def test_serve_a_factory_with_the_default_name(spawn_server, redis_url):
    """serve module:factory calls it; without --name the service takes the attribute's name."""
    proc = start("serve", "servable:make_thing", "--no-register")
    try:
        read_until(proc, "as 'make_thing'")
        assert json.loads(run_cli("call", "make_thing", "incr", "2").stdout) == 2
        assert redisrpc.discover(redis_url) == []  # --no-register
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        proc.wait()


def test_serve_bad_target_exits_2(redis_url):
    """An unimportable module or missing attribute is one line with exit 2."""
    for target, text in [
        ("no_such_module_xyz:Thing", "cannot import"),
        ("servable:Nope", "no attribute"),
        ("servable", "module:attr"),
    ]:
        proc = run_cli("serve", target)
        assert proc.returncode == 2, proc.stderr
        assert text in one_error_line(proc)


def test_demo_serves_the_examples(redis_url):
    """demo serves calc (and the bench) on the reachable Redis, prints how to connect, stops."""
    proc = start("demo")
    try:
        out = read_until(proc, "Ctrl-C stops.")
        assert f"Redis: {redis_url}" in out
        assert "embedded" not in out
        assert "redisrpc.Client(" in out and "calc" in out
        listed = {s.name for s in redisrpc.discover(redis_url)}
        assert "calc" in listed
        assert run_cli("call", "calc", "clr").returncode == 0
        assert json.loads(run_cli("call", "calc", "add", "2.5").stdout) == 2.5
        assert json.loads(run_cli("call", "calc", "history").stdout) == ["add 2.5"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert redisrpc.discover(redis_url) == []
    finally:
        proc.kill()
        proc.wait()


def test_python_dash_m(redis_url):
    """``python -m redisrpc`` is the same command."""
    proc = subprocess.run(
        [PYTHON, "-m", "redisrpc", "--version"],
        check=False,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"redisrpc {redisrpc.__version__}"


def test_tls_url(spawn_server, tmp_path):
    """A rediss:// URL serves and calls through a TLS-only redis-server; plain redis:// fails."""
    openssl, server_binary = shutil.which("openssl"), shutil.which("redis-server")
    if openssl is None or server_binary is None:
        pytest.skip("needs openssl and redis-server")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tls = RedisServer(tls=TLSFiles(cert=cert, key=key, ca=cert)).start()
    port = tls.port
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        spawn_server("servable:Thing", "thing", url=url)
        assert json.loads(run_cli("--url", url, "call", "thing", "incr", "4").stdout) == 4
        plain = run_cli("--url", f"redis://127.0.0.1:{port}/0", "list")
        assert plain.returncode == 3
        one_error_line(plain)
    finally:
        tls.close()


def test_set_writes_a_property_and_refuses_read_only_or_unknown_ones(spawn_server):
    """`redisrpc set NAME PROP VALUE` writes through __setprop__; read-only/unknown: exit 2."""
    spawn_server("servable:Thing", "thing")
    proc = run_cli("set", "thing", "label", '"new label"')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(run_cli("call", "thing", "label").stdout) == "new label"
    assert run_cli("set", "thing", "label", "plainword").returncode == 0
    assert json.loads(run_cli("call", "thing", "label").stdout) == "plainword"
    for args, text in [
        (("set", "thing", "total", "5"), "read-only"),
        (("set", "thing", "nope", "5"), "no such property"),
        (("set", "thing", "incr", "5"), "a method"),
        (("set", "thing", "_total", "5"), "private"),
    ]:
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert text in one_error_line(proc)


def _served(name: str) -> tuple[set[str], dict[str, bool]]:
    """The methods and the properties (name: read-only) a service describes."""
    found = redisrpc.description(redisrpc.Client(None, name, timeout=10)) or {}
    methods = {m["name"] for m in found["methods"]}
    return methods, {p["name"]: p["readonly"] for p in found["properties"]}


def test_serve_readonly_serves_readonly_methods_and_refuses_writes(spawn_server):
    """serve --readonly: only @expose(readonly=True) methods; properties refuse writes."""
    spawn_server("servable:Guarded", "full")
    spawn_server("servable:Guarded", "view", "--readonly")
    assert _served("full") == ({"read", "reset", "calibrate"}, {"level": False})
    assert _served("view") == ({"read"}, {"level": True})
    assert run_cli("set", "full", "level", "2").returncode == 0
    proc = run_cli("set", "view", "level", "3")
    assert proc.returncode == 2 and "read-only" in one_error_line(proc)
    # A client that skips the description is refused by the server itself.
    blind = redisrpc.Client(None, "view", describe=False, timeout=10)
    with pytest.raises(redisrpc.RemoteException, match="reset"):
        blind.reset()
    assert json.loads(run_cli("call", "view", "read").stdout) == 1.0


def test_serve_expose_and_deny_tag_choose_the_members(spawn_server):
    """--expose (comma-separated, repeatable) allow-lists; --deny-tag hides tagged members."""
    spawn_server("servable:Guarded", "some", "--expose", "read,level", "--expose", "calibrate")
    spawn_server("servable:Guarded", "user", "--deny-tag", "admin")
    assert _served("some") == ({"read", "calibrate"}, {"level": False})
    assert _served("user") == ({"read", "reset"}, {"level": False})
    blind = redisrpc.Client(None, "user", describe=False, timeout=10)
    with pytest.raises(redisrpc.RemoteException, match="calibrate"):
        blind.calibrate()


def test_serve_refuses_an_unknown_exposed_name_and_bad_workers(redis_url):
    """A mistyped --expose name or --workers 0 is one line with exit 2, before serving."""
    proc = run_cli("serve", "servable:Guarded", "--expose", "read,lvel")
    assert proc.returncode == 2
    assert "no member 'lvel'" in one_error_line(proc)
    proc = run_cli("serve", "servable:Guarded", "--workers", "0")
    assert proc.returncode == 2 and "whole number of 1 or more" in proc.stderr
    assert redisrpc.discover(redis_url) == []


def test_serve_workers_runs_calls_at_once(spawn_server):
    """serve --workers 2: a quick call is answered while a slow one still runs."""
    spawn_server("servable:Thing", "pair", "--workers", "2")
    proxy = redisrpc.Client(None, "pair", timeout=20)
    slow = threading.Thread(target=proxy.sleep, args=(5.0,))
    slow.start()
    wait_for(lambda: redisrpc.running(proxy), message="the slow call running")
    assert proxy.pid() > 0  # one worker would answer only after the slow call
    assert slow.is_alive() and redisrpc.running(proxy)
    slow.join(20)


def test_an_unexpected_keyword_is_named_not_a_missing_argument(spawn_server):
    """`--kw y=3` for echo(value, *, twice): the error names 'y', not the missing 'value'."""
    spawn_server("servable:Thing", "thing")
    proc = run_cli("call", "thing", "echo", "--kw", "y=3")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "unexpected keyword argument 'y'" in line and "missing" not in line
    assert json.loads(run_cli("call", "thing", "echo", "1", "--kw", "twice=true").stdout) == [1, 1]


def test_list_shows_what_runs_and_call_cancels_on_ctrl_c(spawn_server, redis_url, r):
    """A long call shows under RUNNING; Ctrl-C on `redisrpc call` cancels it on the server."""
    spawn_server("servable:Mover", "mover")
    command = [PYTHON, "-m", "redisrpc", "call", "mover", "move", "400", "0.05"]
    caller = subprocess.Popen(
        command, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: r.get("mover:started"), timeout=10)
        listing = wait_for(lambda: "move()" in (out := run_cli("list").stdout) and out, timeout=5)
        row = next(line for line in listing.splitlines() if line.startswith("mover"))
        assert "move() " in row and f":{caller.pid}" in row
        caller.send_signal(signal.SIGINT)
        _, err = caller.communicate(timeout=10)
    finally:
        if caller.poll() is None:
            caller.kill()
    assert caller.returncode == 130
    assert "was running; the server was asked to cancel it" in err
    wait_for(lambda: r.get("mover:saw_cancel"), timeout=5)


def test_watch_prints_each_change_then_stops_after_count(spawn_server, redis_url):
    """`redisrpc watch NAME MEMBER --count 2`: the current value, then a change made elsewhere."""
    spawn_server("servable:Thing", "thing")
    assert run_cli("set", "thing", "label", '"before"').returncode == 0
    watcher = subprocess.Popen(
        [str(CLI_SCRIPT), "watch", "thing", "label", "--interval", "0.1", "--count", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**python_env(), "REDIS_URL": redis_url},
    )
    try:
        assert watcher.stdout is not None
        first = watcher.stdout.readline().split()
        assert first[1] == '"before"' and first[0].count(":") == 2
        assert run_cli("set", "thing", "label", '"after"').returncode == 0
        assert watcher.stdout.readline().split()[1] == '"after"'
        assert watcher.wait(30) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
    for args, text in [
        (("watch", "thing", "incr"), "not marked @expose"),
        (("watch", "thing", "nope"), "no property 'nope'"),
        (("watch", "thing", "label", "--interval", "0"), "interval"),
    ]:
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert text in one_error_line(proc)


def test_watch_of_a_child_that_is_not_there_is_one_line_exit_2(spawn_server):
    """`redisrpc watch thing nope.volts` (or 0.volts): exit 2 and one line, no traceback."""
    spawn_server("servable:Thing", "thing")
    for member, text in [("nope.volts", "no method or property 'nope'"), ("0.volts", "thing.0")]:
        proc = run_cli("watch", "thing", member, "--count", "1")
        assert proc.returncode == 2, (member, proc.stderr)
        assert text in one_error_line(proc)


def test_watch_stopped_by_sigterm_removes_its_lease(spawn_server, redis_url, r):
    """A supervisor's SIGTERM ends `redisrpc watch` cleanly: exit 0, and its lease is gone."""
    spawn_server("servable:Thing", "thing")
    watcher = subprocess.Popen(
        [str(CLI_SCRIPT), "watch", "thing", "label", "--interval", "0.1"],
        stdout=subprocess.PIPE,
        text=True,
        env={**python_env(), "REDIS_URL": redis_url},
    )
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline()  # watching
        assert r.zcard("thing:watchers") == 1
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(30) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert r.zcard("thing:watchers") == 0
