"""A lean httpx transport on the standard library's :mod:`http.client`.

httpx's default transport (httpcore and h11, pure Python) costs about half of a channel call's
CPU; :class:`KeepAliveTransport` sends the same requests through ``http.client``, which does
far less work per call, and sends a small request in one TCP segment. It is what channel APIs
need and no more:

- HTTP/1.1 only, with keep-alive connections pooled per origin (scheme, host, port): at most
  ``max_idle_per_origin`` idle connections each, taken and given back under a lock, so any
  number of threads may share one transport;
- the request is sent as httpx built it (its headers, in its order and casing; a streamed body
  is read whole first) and the answer's body is read whole before returning, which suits the
  small JSON bodies platforms answer; httpx itself decodes ``Content-Encoding``;
- an idle connection the server has closed is noticed before it is used, or, if the server
  closes it while the request is on its way, the request is sent once more on a new connection,
  but only when not a byte of the answer arrived; a failure on a new connection, or once an
  answer began, is never retried here;
- timeouts (``connect``, then ``write`` while sending and ``read`` while waiting and reading)
  and failures are raised as httpx's exceptions, so callers handle them as with httpx's own
  transport.

Not supported: HTTP/2, proxies (httpx mounts no proxy from the environment when it is given a
transport), client certificates other than through an :class:`ssl.SSLContext` passed as
``verify``, and a limit on the number of connections in use at once (only idle ones are
bounded; ``pool`` timeouts are ignored).
"""

from __future__ import annotations

import email.parser
import http.client
import os
import re
import select
import socket
import ssl
import threading
from typing import Any

import httpx

__all__ = ["KeepAliveTransport", "default_transport"]

_Origin = tuple[str, str, int]

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: Bodies up to this size are sent with the head in one ``sendall``; larger ones on their own.
_CORK_LIMIT = 64 * 1024


class _NoAnswer(Exception):
    """The connection ended before a single byte of the answer arrived: the server had closed
    or reset it while the request was sent, or before it answered. ``error`` is the httpx
    exception to raise if the request is not tried anew."""

    def __init__(self, message: str, error: type[httpx.TransportError]) -> None:
        super().__init__(message)
        self.error = error


#: What http.client allows: the length of a line of the head, and the number of header lines.
_MAX_LINE = 65536
_MAX_HEADERS = 100
#: A header line the email parser would read as ``name: value`` and nothing more (a value of
#: printable ASCII and tabs); any other line makes the head go to the email parser.
_PLAIN_HEADER = re.compile(rb"([\x21-\x39\x3b-\x7e]+):[ \t]*([\x20-\x7e\t]*)\r?\n")


def _read_head(fp: Any) -> list[bytes]:
    """The lines of a head up to the blank line that ends it (included), within http.client's
    limits."""
    lines = []
    while True:
        line = fp.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines


def _parse_head(fp: Any) -> http.client.HTTPMessage:
    """The answer's headers as ``http.client.parse_headers`` gives them, without its email
    parser when every line is a plain ``name: value`` (the parser is a fifth of a loopback
    call's CPU): each header is stored as the parser stores it (name as sent, the value with
    its leading blanks and line end removed)."""
    lines = _read_head(fp)
    msg = http.client.HTTPMessage()
    for line in lines[:-1]:
        plain = _PLAIN_HEADER.fullmatch(line)
        if plain is None:  # folded, not ASCII, a bare CR...: exactly as http.client does
            text = b"".join(lines).decode("iso-8859-1")
            parsed: http.client.HTTPMessage = email.parser.Parser(
                _class=http.client.HTTPMessage
            ).parsestr(text)
            return parsed
        msg.set_raw(plain[1].decode("ascii"), plain[2].decode("ascii"))
    return msg


class _Response(http.client.HTTPResponse):
    """An ``HTTPResponse`` that tells a connection that ended before answering (:class:`_NoAnswer`)
    from one that failed during the answer, and reads its head with :func:`_parse_head`.

    The first byte is peeked from the buffered socket file before the status line is parsed;
    the peek fills the buffer the parser reads next, so it costs no extra system call.

    :meth:`begin` sets what ``HTTPResponse.begin`` sets, by the same rules (RFC 9112's message
    length: chunked, else ``Content-Length``, none for HEAD, 1xx, 204 and 304, else until the
    connection closes); the tests compare the two on generated answers.
    """

    def begin(self) -> None:
        if self.headers is not None:
            return
        try:
            first = self.fp.peek(1)
        except TimeoutError:
            raise
        except OSError as exc:
            raise _NoAnswer(_message(exc, "read failed"), httpx.ReadError) from exc
        if not first:
            raise _NoAnswer(
                "server disconnected without sending a response", httpx.RemoteProtocolError
            )
        version, status, reason = self._read_status()
        while status == http.client.CONTINUE:  # an interim answer: its head is skipped
            _read_head(self.fp)
            version, status, reason = self._read_status()
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = _parse_head(self.fp)
        encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(encoding) and encoding.lower() == "chunked"
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        length: int | None = None
        declared = self.headers.get("content-length")
        if declared and not self.chunked:
            try:
                length = int(declared)
            except ValueError:
                length = None
            if length is not None and length < 0:
                length = None
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":
            length = 0
        self.length = length
        if length is None and not self.chunked:
            self.will_close = True  # the body ends when the connection does


class _Connection(http.client.HTTPConnection):
    """A connection whose answers are :class:`_Response`; while ``corked`` is a list, what
    http.client sends (request line and headers, then the body) is held there for one
    :meth:`uncork`. http.client sends the body apart, in a second TCP segment, which on loopback
    costs about as much time again as the rest of the call."""

    response_class = _Response
    corked: list[bytes] | None = None

    def send(self, data: Any) -> None:
        if self.corked is None:
            super().send(data)
        else:
            self.corked.append(data if isinstance(data, bytes) else bytes(data))

    def uncork(self) -> None:
        """Send what was held, in one ``sendall``."""
        data, self.corked = b"".join(self.corked or ()), None
        super().send(data)


class _TLSConnection(_Connection, http.client.HTTPSConnection):
    """:class:`_Connection` over TLS."""


def _ssl_context(verify: bool | str | ssl.SSLContext) -> ssl.SSLContext:
    """The TLS context for ``verify``: an :class:`ssl.SSLContext` as is; ``True`` the system's
    defaults with certifi's CA bundle when certifi is installed; a path a CA bundle (or a
    directory of CA certificates); ``False`` no verification at all."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is True:
        try:
            import certifi
        except ImportError:  # pragma: no cover - httpx depends on certifi
            ctx = ssl.create_default_context()
        else:
            ctx = ssl.create_default_context(cafile=certifi.where())
    elif verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str):
        if os.path.isdir(verify):
            ctx = ssl.create_default_context(capath=verify)
        else:
            ctx = ssl.create_default_context(cafile=verify)
    else:
        raise TypeError(f"verify must be a bool, a path or an ssl.SSLContext, not {verify!r}")
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _set_timeout(sock: socket.socket, timeout: float | None) -> None:
    if sock.gettimeout() != timeout:
        sock.settimeout(timeout)


def _is_dropped(conn: _Connection) -> bool:
    """Whether an idle connection can no longer be used: closed by us, or readable, which
    for an idle HTTP/1.1 connection means the server closed it (or sent something it should
    not have)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True


def _response_headers(resp: http.client.HTTPResponse) -> list[tuple[bytes, bytes]]:
    """The answer's headers as received: in order, with their casing, duplicates kept (as bytes,
    since http.client read them as Latin-1 and httpx would encode text as ASCII)."""
    headers = []
    for name, value in resp.msg.items():
        if "\n" in value:  # an obsolete folded line: its continuations join with a space
            value = " ".join(part.strip() for part in value.splitlines())
        headers.append((name.encode("latin-1"), value.encode("latin-1")))
    return headers


class KeepAliveTransport(httpx.BaseTransport):
    """An httpx transport on ``http.client`` with pooled keep-alive connections; see the module
    docstring.

    ``verify`` is as httpx's: ``True`` (certifi's CA bundle), a CA bundle path, ``False`` or an
    :class:`ssl.SSLContext`. ``max_idle_per_origin`` bounds the idle connections kept per origin.
    """

    def __init__(
        self,
        *,
        verify: bool | str | ssl.SSLContext = True,
        max_idle_per_origin: int = 10,
    ) -> None:
        if max_idle_per_origin < 0:
            raise ValueError("max_idle_per_origin must be >= 0")
        if not isinstance(verify, bool | str | ssl.SSLContext):
            raise TypeError(f"verify must be a bool, a path or an ssl.SSLContext, not {verify!r}")
        self.max_idle_per_origin = max_idle_per_origin
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None  # built on the first https request
        self._lock = threading.Lock()
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._closed = False

    # the pool ------------------------------------------------------------------------------------

    def idle_count(self) -> int:
        """How many idle connections the pool holds (all origins)."""
        with self._lock:
            return sum(len(conns) for conns in self._idle.values())

    def close(self) -> None:
        """Close every idle connection; a connection in use is closed when its call ends."""
        with self._lock:
            self._closed = True
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        while True:
            with self._lock:
                conns = self._idle.get(origin)
                if not conns:
                    return None
                conn = conns.pop()  # the most recently used: the least likely to be stale
            if not _is_dropped(conn):
                return conn
            conn.close()

    def _give_back(self, origin: _Origin, conn: _Connection) -> None:
        with self._lock:
            if not self._closed:
                conns = self._idle.setdefault(origin, [])
                if len(conns) < self.max_idle_per_origin:
                    conns.append(conn)
                    return
        conn.close()

    def _context(self) -> ssl.SSLContext:
        ctx = self._ssl
        if ctx is None:
            with self._lock:
                if self._ssl is None:
                    self._ssl = _ssl_context(self._verify)
                ctx = self._ssl
        return ctx

    def _connect(
        self, origin: _Origin, timeout: float | None, request: httpx.Request
    ) -> _Connection:
        scheme, host, port = origin
        conn: _Connection
        try:
            if scheme == "https":
                conn = _TLSConnection(host, port, timeout=timeout, context=self._context())
            else:
                conn = _Connection(host, port, timeout=timeout)
            conn.connect()
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(_message(exc, "connect timed out"), request=request) from exc
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise httpx.ConnectError(_message(exc, "connect failed"), request=request) from exc
        return conn

    # the call ------------------------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on a pooled connection and return the answer, its body read."""
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(
                f"KeepAliveTransport supports http and https, not {scheme!r}", request=request
            )
        origin: _Origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        connect_timeout: float | None = timeouts.get("connect")
        read_timeout: float | None = timeouts.get("read")
        write_timeout: float | None = timeouts.get("write")
        body = request.read()
        target = url.raw_path.decode("ascii")

        conn = self._take_idle(origin)
        reused = conn is not None
        if conn is None:
            conn = self._connect(origin, connect_timeout, request)
        while True:
            try:
                resp, content = self._exchange(
                    conn, request, target, body, write_timeout, read_timeout
                )
            except _NoAnswer as exc:
                conn.close()
                if reused:  # a kept-alive connection the server had closed: once more, anew
                    reused = False
                    conn = self._connect(origin, connect_timeout, request)
                    continue
                raise exc.error(str(exc), request=request) from exc
            except BaseException:
                conn.close()
                raise
            break

        if resp.will_close or conn.sock is None:
            conn.close()
        else:
            self._give_back(origin, conn)
        return httpx.Response(
            resp.status,
            headers=_response_headers(resp),
            stream=httpx.ByteStream(content),
            request=request,
            extensions={
                "http_version": b"HTTP/1.0" if resp.version == 10 else b"HTTP/1.1",
                "reason_phrase": resp.reason.encode("latin-1", "replace"),
            },
        )

    def _exchange(
        self,
        conn: _Connection,
        request: httpx.Request,
        target: str,
        body: bytes,
        write_timeout: float | None,
        read_timeout: float | None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request and its whole answer on ``conn``; raises :class:`_NoAnswer` if the
        connection ended before the answer began, an httpx exception on any other failure."""
        sock = conn.sock
        assert sock is not None
        _set_timeout(sock, write_timeout)
        conn.corked = [] if len(body) <= _CORK_LIMIT else None
        try:
            conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
            chunked = False
            for name, value in request.headers.raw:
                conn.putheader(name, value)
                if name.lower() == b"transfer-encoding":
                    # httpx streams a body of unknown length: it was read whole, sent chunked
                    chunked = b"chunked" in value.lower()
            conn.endheaders(body if body or chunked else None, encode_chunked=chunked)
            if conn.corked is not None:
                conn.uncork()
        except TimeoutError as exc:
            raise httpx.WriteTimeout(_message(exc, "write timed out"), request=request) from exc
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            # The server had closed the connection (a kept-alive one is tried anew).
            raise _NoAnswer(_message(exc, "write failed"), httpx.WriteError) from exc
        except OSError as exc:
            raise httpx.WriteError(_message(exc, "write failed"), request=request) from exc
        except (ValueError, http.client.HTTPException) as exc:
            # http.client refuses a method, target or header it cannot send as is.
            raise httpx.LocalProtocolError(str(exc), request=request) from exc

        _set_timeout(sock, read_timeout)
        try:
            resp = conn.getresponse()
            try:
                content = resp.read()
            finally:
                resp.close()
        except _NoAnswer:
            raise
        except TimeoutError as exc:
            raise httpx.ReadTimeout(_message(exc, "read timed out"), request=request) from exc
        except http.client.HTTPException as exc:
            raise httpx.RemoteProtocolError(
                _message(exc, "malformed response"), request=request
            ) from exc
        except OSError as exc:
            raise httpx.ReadError(_message(exc, "read failed"), request=request) from exc
        return resp, content


def _message(exc: BaseException, default: str) -> str:
    text = str(exc)
    return f"{default}: {text}" if text else default


def default_transport() -> KeepAliveTransport | None:
    """The transport a channel client uses when given none: a :class:`KeepAliveTransport`,
    unless the environment names a proxy (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and
    the like), which only httpx's own transport honours: then None, and httpx chooses. A CA
    bundle named by ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` is the one verified against, as
    httpx would."""
    import urllib.request

    if urllib.request.getproxies():
        return None
    verify: bool | str = os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR") or True
    return KeepAliveTransport(verify=verify)
