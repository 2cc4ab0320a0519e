"""Access: the exposure rule and its tags, Redis ACL users, TLS URLs, and no pickle anywhere."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, RedisServer

import redisrpc
from redisrpc.testing import TLSFiles

# The command set a redisrpc user needs, as documented in the README.
LAB_RULES = [
    "-@all", "+@connection", "+@read", "+@write", "+@list", "+@sortedset", "+@hash",
    "+@keyspace", "+@scripting", "+time", "-@dangerous", "+info",
]  # fmt: skip


class Instrument:
    """An instrument with a read-only query, a move, an admin reset and a position."""

    def __init__(self) -> None:
        self._position = 0.0
        self.resets = 0

    @redisrpc.expose(readonly=True)
    def read(self) -> float:
        return self._position

    @redisrpc.expose
    def move(self, x: float) -> float:
        self._position = x
        return x

    @redisrpc.expose(tags={"admin"})
    def reset(self) -> None:
        self.resets += 1
        self._position = 0.0

    @redisrpc.expose
    @property
    def position(self) -> float:
        return self._position

    @position.setter
    def position(self, x: float) -> None:
        self._position = x


def described(proxy) -> set[str]:
    info = redisrpc.description(proxy)
    return {m["name"] for m in info["methods"]} | {p["name"] for p in info["properties"]}


def callable_names(proxy) -> set[str]:
    """Names the server actually runs, tried with raw calls (not the proxy's own class)."""
    found = set()
    for name in ("read", "move", "reset"):
        try:
            proxy._rpc_call(name, [1.0] if name == "move" else [], {})
            found.add(name)
        except AttributeError:
            pass
    try:
        proxy._rpc_call("__getprop__", ["position"], {})
        found.add("position")
    except AttributeError:
        pass
    return found


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {"read", "move", "reset", "position"}),
        ({"deny_tags": {"admin"}}, {"read", "move", "position"}),
        ({"readonly": True}, {"read", "position"}),
        ({"expose": ["read", "reset"]}, {"read", "reset"}),
    ],
)
def test_one_rule_for_calls_and_describe(r, serve, options, expected):
    """What __describe__ lists is exactly what the server runs, under every access option."""
    serve(Instrument(), "inst", **options)
    proxy = redisrpc.Client(r, "inst", timeout=5)
    assert described(proxy) == expected
    assert callable_names(proxy) == expected


def test_readonly_server_refuses_writes(r, serve):
    """A read-only server refuses property writes and untagged methods, and runs nothing."""
    obj = Instrument()
    serve(obj, "inst", readonly=True)
    proxy = redisrpc.Client(r, "inst", timeout=5)
    assert proxy.read() == 0.0
    with pytest.raises(AttributeError, match="read-only"):
        proxy._rpc_call("__setprop__", ["position", 5.0], {})
    with pytest.raises(AttributeError):
        proxy._rpc_call("move", [5.0], {})
    with pytest.raises(AttributeError):
        proxy.position = 5.0  # the proxy's property is read-only too
    assert obj._position == 0.0


def test_admin_tagged_methods_hidden(r, serve):
    """deny_tags hides admin methods from a public server while another server exposes them."""
    obj = Instrument()
    serve(obj, "inst", deny_tags={"admin"})
    serve(obj, "inst-admin")
    public = redisrpc.Client(r, "inst", timeout=5)
    admin = redisrpc.Client(r, "inst-admin", timeout=5)
    assert "reset" not in dir(public)
    with pytest.raises(AttributeError):
        public._rpc_call("reset", [], {})
    admin.reset()
    assert obj.resets == 1


# -- Redis ACL users ----------------------------------------------------------------


def make_user(proc: RedisServer, name: str, password: str, *rules: str) -> str:
    """Create a Redis ACL user and return a URL that logs in as it."""
    with proc.client() as admin:
        admin.execute_command("ACL", "SETUSER", name, "on", f">{password}", *rules)
    return f"redis://{name}:{password}@127.0.0.1:{proc.port}/0"


def test_acl_user_limited_to_the_service(own_redis):
    """A user limited to the service's keys and the registry serves and calls, lock included."""
    url = make_user(
        own_redis, "lab", "s3cret", "resetkeys", "~inst", "~inst:*", "~redisrpc:*", *LAB_RULES
    )
    obj = Instrument()
    with redisrpc.Server(url, "inst", obj, poll_interval=0.1):
        proxy = redisrpc.Client(url, "inst", timeout=5)
        assert proxy.move(3.0) == 3.0
        with redisrpc.lock(proxy, note="acl"):
            assert proxy.read() == 3.0
        assert [s.name for s in redisrpc.discover(url)] == ["inst"]
    with own_redis.client() as admin:
        assert admin.execute_command("ACL", "LOG", "10") == []  # no command was denied


def test_server_keeps_serving_when_client_reply_is_revoked(own_redis):
    """An ACL change forbids CLIENT (so CLIENT REPLY SKIP) mid-run: every call is still served."""
    url = make_user(
        own_redis, "lab", "s3cret", "resetkeys", "~inst", "~inst:*", "~redisrpc:*", *LAB_RULES
    )
    with redisrpc.Server(url, "inst", Instrument(), poll_interval=0.1) as server:
        proxy = redisrpc.Client(url, "inst", timeout=5)
        assert proxy.move(1.0) == 1.0
        with own_redis.client() as admin:
            admin.execute_command("ACL", "SETUSER", "lab", "-client")
        for step in range(20):
            assert proxy.move(float(step)) == float(step)
        assert server.running


def test_acl_user_without_access_gets_a_transport_error(own_redis):
    """A user whose keys do not cover the service gets TransportError, never redis.exceptions."""
    obj = Instrument()
    with redisrpc.Server(own_redis.url, "inst", obj, poll_interval=0.1):
        outsider = make_user(own_redis, "guest", "pw", "resetkeys", "~other:*", *LAB_RULES)
        with pytest.raises(redisrpc.TransportError, match="refused access"):
            redisrpc.Client(outsider, "inst", timeout=5)
        wrong = f"redis://lab:wrong@127.0.0.1:{own_redis.port}/0"
        with pytest.raises(redisrpc.TransportError):
            redisrpc.Client(wrong, "inst", timeout=5)
    assert obj.resets == 0 and obj._position == 0.0


# -- TLS ----------------------------------------------------------------------------


def tls_compiled() -> bool:
    """Whether this redis-server accepts the TLS options at all."""
    binary = shutil.which("redis-server")
    if binary is None:
        return False
    probe = subprocess.run(
        [binary, "--port", "0", "--tls-port", "0", "--save", ""],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return "Bad directive" not in probe.stdout + probe.stderr


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca_and_cert(where: Path, tag: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate it signs for 127.0.0.1: (ca, cert, key)."""
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-keyout", f"{tag}-ca.key", "-out", f"{tag}-ca.crt", "-subj", f"/CN={tag} test CA",
        cwd=where,
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{tag}.key", "-out", f"{tag}.csr",
        "-subj", "/CN=127.0.0.1",
        cwd=where,
    )  # fmt: skip
    (where / f"{tag}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", f"{tag}.csr", "-CA", f"{tag}-ca.crt", "-CAkey", f"{tag}-ca.key",
        "-CAcreateserial", "-out", f"{tag}.crt", "-days", "1", "-extfile", f"{tag}.ext",
        cwd=where,
    )  # fmt: skip
    return where / f"{tag}-ca.crt", where / f"{tag}.crt", where / f"{tag}.key"


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server that also listens with TLS, and the CA that signed its certificate."""
    if not tls_compiled():
        pytest.skip("this redis-server was built without TLS support")
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    ca, cert, key = make_ca_and_cert(tmp_path, "server")
    proc = RedisServer(tls=TLSFiles(cert=cert, key=key, ca=ca)).start()
    yield proc.port, ca, tmp_path
    proc.close()


def test_rediss_url_with_verified_certificate(tls_redis):
    """Server and client talk over TLS with a rediss:// URL that verifies the server."""
    port, ca, _ = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    with redisrpc.Server(url, "inst", Instrument(), poll_interval=0.1):
        proxy = redisrpc.Client(url, "inst", timeout=5)
        assert proxy.move(2.0) == 2.0


def test_rediss_url_with_untrusted_certificate_fails_clearly(tls_redis):
    """A certificate signed by a CA the client does not trust is a RedisConnectionError."""
    port, _, where = tls_redis
    other_ca, _, _ = make_ca_and_cert(where, "other")
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={other_ca}"
    with pytest.raises(redisrpc.RedisConnectionError, match="certificate"):
        redisrpc.Client(url, "inst", timeout=5)


# -- nothing from a message is ever unpickled or evaluated --------------------------

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def test_no_pickle_or_eval_in_the_library():
    """No module of redisrpc imports a pickle-like module or calls eval, exec or compile."""
    sources = sorted((ROOT / "redisrpc").glob("*.py"))
    assert sources
    found = []
    for path in sources:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in FORBIDDEN_CALLS:
                    found.append(f"{path.name}:{node.lineno} calls {node.func.id}")
                continue
            else:
                continue
            found += [
                f"{path.name}:{node.lineno} imports {n}" for n in names if n in FORBIDDEN_MODULES
            ]
    assert found == []
