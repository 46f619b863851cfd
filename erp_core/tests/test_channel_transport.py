"""The http.client transport (KeepAliveTransport) against real HTTP servers on loopback:
round trips, keep-alive and stale connections, body framings, gzip, timeouts and errors,
threads, TLS; and ChannelHTTPClient over it."""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from erp_core.channels.http import ChannelHTTPClient, RetryPolicy, Timeouts, TransientError
from erp_core.channels.transport import KeepAliveTransport, default_transport

# --- the server ----------------------------------------------------------------------------------


class Server(ThreadingHTTPServer):
    """Counts the TCP connections it accepts and records the request bodies its handlers
    acted upon (``bodies``) and every request whose head it read (``heads``)."""

    daemon_threads = True

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        self.lock = threading.Lock()
        self.connections = 0
        self.heads: list[str] = []
        self.bodies: list[bytes] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1
        self.served = 0  # requests answered on this connection

    def log_message(self, format: str, *args: Any) -> None:
        return None

    # helpers -------------------------------------------------------------------------------------

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def answer(
        self,
        body: bytes,
        status: int = 200,
        headers: Sequence[tuple[str, str]] = (),
        length: bool = True,
        reason: str | None = None,
    ) -> None:
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.served += 1

    def answer_json(self, data: Any, **kwargs: Any) -> None:
        headers = [("Content-Type", "application/json"), *kwargs.pop("headers", [])]
        self.answer(json.dumps(data).encode(), headers=headers, **kwargs)

    # routes --------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self.do_GET()

    def do_PUT(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        route = parts.path
        with self.server.lock:
            self.server.heads.append(f"{self.command} {self.path}")
        if route == "/drop":
            # Reads the request and closes without a word (a server dropping the connection).
            self.read_body()
            self.close_connection = True
            return
        if route == "/drop-second" and self.served >= 1:
            # A kept-alive connection the server gives up on as the next request arrives
            # (unread: the connection is reset).
            self.close_connection = True
            return
        body = self.read_body()
        with self.server.lock:
            self.server.bodies.append(body)
        if route in ("/echo", "/drop-second"):
            self.answer_json(
                {
                    "method": self.command,
                    "target": self.path,
                    "headers": list(self.headers.items()),
                    "body": body.decode("latin-1"),
                    "port": self.client_address[1],
                },
                headers=[
                    ("Set-Cookie", "a=1; Path=/"),
                    ("Set-Cookie", "b=2; Path=/"),
                    ("X-Name", "caf\xe9"),
                ],
                status=int(query.get("status", "200")),
                reason=query.get("reason"),
            )
        elif route == "/id":
            self.answer_json({"id": query["id"], "port": self.client_address[1]})
        elif route == "/close-silently":
            # Closes after answering, without saying so (no Connection: close).
            self.answer_json({"n": len(self.server.bodies), "body": body.decode()})
            self.close_connection = True
        elif route == "/close-header":
            self.answer_json({"closing": True}, headers=[("Connection", "close")])
        elif route == "/eof-body":
            # HTTP/1.0 style: no length, the body ends when the connection closes.
            self.protocol_version = "HTTP/1.0"
            self.answer(b'{"framing": "eof", "pad": "' + b"x" * 3000 + b'"}', length=False)
            self.close_connection = True
        elif route == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in (b'{"framing": ', b'"chunked", ', b'"n": 3}'):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            self.served += 1
        elif route == "/gzip":
            data = json.dumps({"order": "T1", "total": "19.90", "lines": list(range(50))})
            self.answer(
                gzip.compress(data.encode()),
                headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
            )
        elif route == "/slow":
            time.sleep(float(query["delay"]))
            self.answer_json({"slow": True})
        elif route == "/truncated":
            # The answer begins, then the connection ends: must not be sent again.
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
            self.close_connection = True
        else:
            self.answer(b"not found", status=404)


def _serve(ssl_context: ssl.SSLContext | None = None) -> Iterator[Server]:
    srv = Server(ssl_context)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    yield from _serve()


@pytest.fixture
def transport() -> Iterator[KeepAliveTransport]:
    with KeepAliveTransport() as t:
        yield t


@pytest.fixture
def client(transport: KeepAliveTransport) -> Iterator[httpx.Client]:
    with httpx.Client(transport=transport, timeout=httpx.Timeout(5.0)) as c:
        yield c


def _names(headers: list[list[str]]) -> list[str]:
    return [name.lower() for name, _ in headers]


def _free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()  # nothing listens there now
    return port


# --- round trips ---------------------------------------------------------------------------------


def test_get_round_trip(server, client):
    r = client.get(
        server.url("/echo"),
        params={"q": "a b&c", "n": "1"},
        headers={"X-Custom": "Value"},
    )
    assert r.status_code == 200 and r.reason_phrase == "OK" and r.http_version == "HTTP/1.1"
    got = r.json()
    assert got["method"] == "GET"
    assert got["target"] == "/echo?q=a+b%26c&n=1"
    assert got["body"] == ""
    sent = got["headers"]
    names = _names(sent)
    for name in ("host", "accept", "accept-encoding", "user-agent", "connection"):
        assert names.count(name) == 1, name
    # headers arrive as httpx built them: casing, Host first, Accept-Encoding its own
    assert sent[0] == ["Host", f"127.0.0.1:{server.port}"]
    assert ["X-Custom", "Value"] in sent
    assert dict(sent)["Accept-Encoding"] == r.request.headers["Accept-Encoding"]
    # answer headers as received: duplicates kept, Latin-1 decoded
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert [k for k, _ in r.headers.raw].count(b"Set-Cookie") == 2
    assert r.headers["x-name"] == "caf\xe9"
    assert r.headers["content-type"] == "application/json"
    assert "content-length" in r.headers and r.elapsed.total_seconds() > 0


def test_post_form_json_and_bytes_arrive_intact(server, client):
    form = {"method": "taobao.trade.get", "tid": "123", "note": "清关 & más=1"}
    got = client.post(server.url("/echo?sign=AB"), data=form).json()
    assert got["method"] == "POST" and got["target"] == "/echo?sign=AB"
    assert dict(parse_qsl(got["body"].encode("latin-1").decode())) == form
    headers = {name.lower(): value for name, value in got["headers"]}
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert int(headers["content-length"]) == len(got["body"])
    assert _names(got["headers"]).count("content-length") == 1

    payload = {"items": [{"sku": "A-1", "qty": 2}], "memo": "ünïcode ✓"}
    got = client.post(server.url("/echo"), json=payload).json()
    assert json.loads(got["body"].encode("latin-1")) == payload
    assert dict(got["headers"])["Content-Type"] == "application/json"

    raw = bytes(range(256)) * 40
    got = client.put(server.url("/echo"), content=raw).json()
    assert got["method"] == "PUT" and got["body"].encode("latin-1") == raw


def test_streamed_request_body_is_sent_chunked(server, client):
    got = client.post(server.url("/echo"), content=iter([b"ab", b"", b"cdef"])).json()
    assert got["body"] == "abcdef"
    headers = {name.lower(): value for name, value in got["headers"]}
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers


def test_status_reason_and_head(server, client, transport):
    r = client.post(server.url("/echo?status=201&reason=Made+It"), data={"a": "1"})
    assert r.status_code == 201 and r.reason_phrase == "Made It"
    r = client.head(server.url("/echo"))
    assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) > 0
    assert client.get(server.url("/nowhere")).status_code == 404
    assert server.connections == 1 and transport.idle_count() == 1


# --- keep-alive and stale connections ------------------------------------------------------------


def test_sequential_calls_share_one_connection(server, client, transport):
    ports = {client.get(server.url("/id"), params={"id": str(i)}).json()["port"] for i in range(20)}
    assert len(ports) == 1 and server.connections == 1
    assert transport.idle_count() == 1


def test_server_closing_without_saying_so(server, client, transport):
    for i in range(10):
        r = client.post(server.url("/close-silently"), data={"call": str(i)})
        assert r.status_code == 200 and r.json() == {"n": i + 1, "body": f"call={i}"}
    # each POST reached the server exactly once, each on a connection of its own
    assert server.bodies == [f"call={i}".encode() for i in range(10)]
    assert server.connections == 10


def test_reused_connection_dropped_is_tried_once_on_a_new_one(server, client, transport):
    first = client.post(server.url("/drop-second"), data={"n": "1"}).json()
    # the connection is kept; the server drops it when the second request arrives, unread
    second = client.post(server.url("/drop-second"), data={"n": "2"}).json()
    assert first["port"] != second["port"] and server.connections == 2
    assert server.bodies == [b"n=1", b"n=2"]  # acted upon once each
    assert server.heads == ["POST /drop-second"] * 3


def test_no_retry_on_a_new_connection(server, client):
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(server.url("/drop"), data={"n": "1"})
    assert server.heads == ["POST /drop"] and server.connections == 1


def test_reused_connection_is_retried_once_only(server, client):
    client.get(server.url("/id?id=1"))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(server.url("/drop"), data={"n": "1"})
    # once on the kept connection, once on a new one; never a third time
    assert server.heads == ["GET /id?id=1", "POST /drop", "POST /drop"]
    assert server.connections == 2


def test_no_retry_once_the_answer_began(server, client, transport):
    client.get(server.url("/id?id=1"))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(server.url("/truncated"), data={"n": "1"})
    assert server.heads == ["GET /id?id=1", "POST /truncated"] and server.connections == 1
    assert transport.idle_count() == 0
    assert client.get(server.url("/id?id=2")).json()["id"] == "2"  # a new connection works


# --- framings and encodings ----------------------------------------------------------------------


def test_connection_close_answer_is_not_reused(server, client, transport):
    r = client.get(server.url("/close-header"))
    assert r.json() == {"closing": True} and r.headers["connection"] == "close"
    assert transport.idle_count() == 0
    client.get(server.url("/close-header"))
    assert server.connections == 2


def test_close_delimited_body(server, client, transport):
    r = client.get(server.url("/eof-body"))
    assert r.http_version == "HTTP/1.0" and "content-length" not in r.headers
    assert r.json() == {"framing": "eof", "pad": "x" * 3000}
    assert transport.idle_count() == 0
    assert client.get(server.url("/eof-body")).json()["framing"] == "eof"
    assert server.connections == 2


def test_chunked_answer(server, client, transport):
    r = client.get(server.url("/chunked"))
    assert r.json() == {"framing": "chunked", "n": 3}
    assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
    assert transport.idle_count() == 1  # fully read: the connection is kept
    client.get(server.url("/chunked"))
    assert server.connections == 1


def test_gzip_answer_is_decoded_by_httpx(server, client):
    r = client.get(server.url("/gzip"))
    assert r.headers["content-encoding"] == "gzip"
    assert r.json() == {"order": "T1", "total": "19.90", "lines": list(range(50))}
    assert int(r.headers["content-length"]) == r.num_bytes_downloaded < len(r.content)


def test_unsupported_scheme(client):
    with pytest.raises(httpx.UnsupportedProtocol):
        client.get("ftp://127.0.0.1/x")


# --- timeouts and errors -------------------------------------------------------------------------


def test_read_timeout(server, transport):
    with httpx.Client(transport=transport, timeout=httpx.Timeout(5.0, read=0.2)) as c:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout) as info:
            c.get(server.url("/slow?delay=1.0"))
        assert time.monotonic() - started < 0.8
    assert info.value.request.url.path == "/slow"
    assert transport.idle_count() == 0


def test_connect_error(transport):
    with httpx.Client(transport=transport) as c, pytest.raises(httpx.ConnectError) as info:
        c.get(f"http://127.0.0.1:{_free_port()}/x")
    assert info.value.request.url.host == "127.0.0.1"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="relies on Linux's backlog")
def test_connect_timeout(transport):
    # A listener whose backlog is full and which never accepts: Linux drops the next SYN.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.05)
    try:
        with httpx.Client(transport=transport, timeout=httpx.Timeout(5.0, connect=0.2)) as c:
            started = time.monotonic()
            with pytest.raises(httpx.ConnectTimeout):
                c.get(f"http://127.0.0.1:{port}/x")
            assert time.monotonic() - started < 1.0
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_write_timeout(transport):
    # A server that accepts and never reads: a large body fills the socket buffers.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # no autotuning
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    acceptor = threading.Thread(target=lambda: accepted.append(listener.accept()[0]))
    acceptor.start()
    try:
        timeout = httpx.Timeout(5.0, write=0.2)
        with (
            httpx.Client(transport=transport, timeout=timeout) as c,
            pytest.raises(httpx.WriteTimeout),
        ):
            c.post(f"http://127.0.0.1:{port}/x", content=b"x" * (16 * 1024 * 1024))
    finally:
        acceptor.join(5)
        for s in accepted:
            s.close()
        listener.close()


# --- through ChannelHTTPClient -------------------------------------------------------------------


class Sleeps:
    """Records the client's back-off sleeps without sleeping."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _channel_client(base_url: str, sleeps: Sleeps, **kwargs: Any) -> ChannelHTTPClient:
    return ChannelHTTPClient(
        base_url,
        account="shop-1",
        transport=KeepAliveTransport(),
        sleep=sleeps,
        **kwargs,
    )


def test_channel_client_call(server):
    sleeps = Sleeps()
    with _channel_client(server.url(""), sleeps) as c:
        got = c.post("/echo", params={"v": "2.0"}, data={"amount": "19.90"})
        gz = c.get("/gzip")
    assert got.status == 200 and got.attempts == 1 and not sleeps.sleeps
    assert got.data["target"] == "/echo?v=2.0" and got.data["body"] == "amount=19.90"
    assert gz.data["total"] == "19.90" and gz.data["lines"][:3] == [0, 1, 2]


def test_channel_client_read_timeout_becomes_transient(server):
    sleeps = Sleeps()
    with (
        _channel_client(
            server.url(""),
            sleeps,
            timeouts=Timeouts(connect=1, read=0.15),
            retry=RetryPolicy(max_attempts=2, base_delay=0.01),
        ) as c,
        pytest.raises(TransientError) as info,
    ):
        c.get("/slow", params={"delay": "0.6"})
    assert info.value.code == "timeout" and info.value.attempts == 2
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert len(sleeps.sleeps) == 1


def test_channel_client_connect_error_becomes_transient():
    sleeps = Sleeps()
    with (
        _channel_client(
            f"http://127.0.0.1:{_free_port()}", sleeps, retry=RetryPolicy(max_attempts=3)
        ) as c,
        pytest.raises(TransientError) as info,
    ):
        c.get("/x")
    assert info.value.code == "network" and info.value.attempts == 3
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(sleeps.sleeps) == 2


# --- threads -------------------------------------------------------------------------------------


def _hammer(
    client: httpx.Client, url: str, threads: int, calls: int
) -> tuple[list[str], list[BaseException]]:
    wrong: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker(n: int) -> None:
        start.wait()
        for i in range(calls):
            rid = f"{n}-{i}"
            try:
                got = client.post(url, params={"id": rid}, data={"id": rid}).json()
            except BaseException as exc:
                errors.append(exc)
            else:
                if got["id"] != rid:
                    wrong.append(f"{rid} -> {got['id']}")

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    return wrong, errors


def test_threads_share_one_client(server, client, transport):
    wrong, errors = _hammer(client, server.url("/id"), threads=4, calls=25)
    assert not errors and not wrong
    assert len(server.bodies) == 100
    assert server.connections <= 4  # one at most per thread, the rest reused
    assert transport.idle_count() == server.connections


def test_threads_never_keep_more_idle_than_allowed(server):
    transport = KeepAliveTransport(max_idle_per_origin=2)
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(transport.idle_count())
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with httpx.Client(transport=transport) as c:
            wrong, errors = _hammer(c, server.url("/id"), threads=4, calls=25)
            # every connection was given back: those beyond the bound were closed
            assert transport.idle_count() == min(2, server.connections)
    finally:
        done.set()
        watcher.join(5)
    assert not errors and not wrong and len(server.bodies) == 100
    assert seen and max(seen) <= 2
    assert transport.idle_count() == 0  # closed with the client


# --- TLS -----------------------------------------------------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509", reason="cryptography makes the certificate")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    cert, key = _self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    for srv in _serve(ctx):
        yield srv, cert


def _calls(make: Callable[[], KeepAliveTransport], url: str, n: int) -> list[Any]:
    with httpx.Client(transport=make()) as c:
        return [c.get(url, params={"id": str(i)}).json() for i in range(n)]


def test_tls_with_the_certificate_as_ca_bundle(tls_server):
    srv, cert = tls_server
    got = _calls(lambda: KeepAliveTransport(verify=str(cert)), srv.url("/id", "https"), 5)
    assert [g["id"] for g in got] == ["0", "1", "2", "3", "4"]
    assert srv.connections == 1  # one handshake, kept alive


def test_tls_verify_fails_against_the_default_bundle(tls_server):
    srv, _ = tls_server
    with pytest.raises(httpx.ConnectError) as info:
        _calls(lambda: KeepAliveTransport(verify=True), srv.url("/id", "https"), 1)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


def test_tls_unverified_and_own_context(tls_server):
    srv, cert = tls_server
    got = _calls(lambda: KeepAliveTransport(verify=False), srv.url("/id", "https"), 2)
    assert [g["id"] for g in got] == ["0", "1"]
    ctx = ssl.create_default_context(cafile=str(cert))
    got = _calls(lambda: KeepAliveTransport(verify=ctx), srv.url("/id", "https"), 2)
    assert [g["id"] for g in got] == ["0", "1"]


def test_bad_arguments():
    with pytest.raises(ValueError):
        KeepAliveTransport(max_idle_per_origin=-1)
    with pytest.raises(TypeError):
        KeepAliveTransport(verify=1.5)  # type: ignore[arg-type]


def test_channel_clients_use_it_unless_the_environment_names_a_proxy(server, monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    client = ChannelHTTPClient(server.url(""))
    try:
        assert isinstance(client._client._transport, KeepAliveTransport)
        assert client.get("/echo").status == 200
    finally:
        client.close()
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # honoured by httpx's own only
    assert default_transport() is None
    proxied = ChannelHTTPClient("https://example.invalid")
    try:
        assert not isinstance(proxied._client._transport, KeepAliveTransport)
        assert proxied._client._mounts  # httpx mounted the proxy
    finally:
        proxied.close()


# --- the answer's head, against http.client's own reading ----------------------------------------

_HEADER_NAMES = [
    "Content-Length",
    "content-length",
    "Transfer-Encoding",
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "X-Trace!~",
    "Set-Cookie",
]
_HEADER_VALUES = [
    "0",
    "12",
    " 7 ",
    "-3",
    "x",
    "chunked",
    "Chunked",
    "gzip, chunked",
    "close",
    "Keep-Alive",
    "timeout=5",
    "",
    "a  b\t",
    "\tlead",
]


def _head_lines() -> Any:
    from hypothesis import strategies as st

    plain = st.builds(
        lambda n, v, crlf: f"{n}:{v}".encode("latin-1") + (b"\r\n" if crlf else b"\n"),
        st.sampled_from(_HEADER_NAMES),
        st.sampled_from([" " + v for v in _HEADER_VALUES] + _HEADER_VALUES),
        st.booleans(),
    )
    odd = st.sampled_from(
        [
            b"X-Folded: one\r\n  two\r\n",  # an obsolete folded line
            b"X-Latin: caf\xe9\r\n",  # not ASCII
            b"X-Cr: a\rb\r\n",  # a bare CR
            b"No colon here\r\n",
            b"Spaced Name: x\r\n",
            b": empty name\r\n",
            b"From someone\r\n",
        ]
    )
    return st.lists(st.one_of(plain, plain, plain, odd), max_size=8)


def test_the_head_is_read_as_http_client_reads_it() -> None:
    """_Response.begin (headers without the email parser when plain) sets what
    HTTPResponse.begin sets, or raises what it raises, on generated answers: interim 100s,
    versions, framing headers in any case and number, odd lines, HEAD, bodiless statuses."""
    import http.client
    import io

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from erp_core.channels.transport import _Response

    class Sock:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def makefile(self, mode: str) -> Any:
            return io.BufferedReader(io.BytesIO(self.data))

    def outcome(cls: type[http.client.HTTPResponse], data: bytes, method: str) -> Any:
        resp = cls(Sock(data), method=method)  # type: ignore[arg-type]
        try:
            resp.begin()
        except Exception as exc:  # the exception is what is compared
            return type(exc).__name__
        try:
            body: Any = resp.read()
        except Exception as exc:
            body = type(exc).__name__
        return (
            resp.status,
            resp.reason,
            resp.version,
            resp.chunked,
            resp.chunk_left if resp.chunked else None,
            resp.length,
            resp.will_close,
            list(resp.headers.items()),
            [(k, resp.headers.get(k)) for k in ("content-length", "transfer-encoding")],
            body,
        )

    @settings(max_examples=400, deadline=None)
    @given(
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTX/1.1"]),
        st.sampled_from([b"200 OK", b"204 No Content", b"304  Not Modified ", b"103 Early", b"x"]),
        st.booleans(),
        _head_lines(),
        st.sampled_from(["GET", "HEAD"]),
        st.sampled_from([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n"]),
    )
    def check(
        version: bytes,
        status: bytes,
        interim: bool,
        lines: list[bytes],
        method: str,
        body: bytes,
    ) -> None:
        data = b"HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\n" if interim else b""
        data += version + b" " + status + b"\r\n" + b"".join(lines) + b"\r\n" + body
        assert outcome(_Response, data, method) == outcome(http.client.HTTPResponse, data, method)

    check()
    # and a plain head takes the fast path (the email parser is not called)
    import email.parser

    calls: list[str] = []
    real = email.parser.Parser.parsestr

    def spy(self: Any, text: str, headersonly: bool = False) -> Any:
        calls.append(text)
        return real(self, text, headersonly)

    email.parser.Parser.parsestr = spy  # type: ignore[method-assign]
    try:
        data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A:  b \r\n\r\nok"
        assert outcome(_Response, data, "GET")[-1] == b"ok"
        assert calls == []
        outcome(_Response, b"HTTP/1.1 200 OK\r\nX-F: a\r\n b\r\nContent-Length: 0\r\n\r\n", "GET")
        assert len(calls) == 1
    finally:
        email.parser.Parser.parsestr = real  # type: ignore[method-assign]
