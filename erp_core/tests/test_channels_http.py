"""The connectors' HTTP client against a real HTTP server (uvicorn on loopback), the rate
limiter and log redaction."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from erp_core.channels.http import (
    AuthError,
    ChannelHTTPClient,
    ChannelRequest,
    Outcome,
    PlatformError,
    RateLimiter,
    RetryPolicy,
    ThrottledError,
    Timeouts,
    TransientError,
    Verdict,
    parse_retry_after,
    shared_limiter,
)
from erp_core.channels.interfaces import ChannelAuthError, ChannelRejected, ChannelThrottled
from erp_core.channels.redact import RedactingFilter, Redactor, is_sensitive_key
from erp_core.channels.signing import constant_time_equals, top_sign

APP_KEY = "12345678"
SECRET = "sandbox-app-secret-0f9e8d7c"
SESSION = "6100e1f2a3b4c5d6e7f8session-token"

# --- the sandbox-ish server ----------------------------------------------------------------------


def _top_error(code: int, msg: str, sub_code: str | None = None) -> JSONResponse:
    err: dict[str, Any] = {"code": code, "msg": msg, "request_id": "abc"}
    if sub_code:
        err["sub_code"] = sub_code
    return JSONResponse({"error_response": err})


def build_app(hits: Counter[str]) -> Starlette:
    async def behave(request: Request) -> Response:
        kind = request.path_params["kind"]
        key = request.path_params["key"]
        q = request.query_params
        hits[key] += 1
        n = hits[key]
        failing = n <= int(q.get("fail", "0"))
        if kind == "ok":
            return JSONResponse({"ok": True, "hit": n})
        if kind == "flaky":
            if failing:
                extra = {"Retry-After": q["retry_after"]} if "retry_after" in q else {}
                return Response(
                    "upstream down", status_code=int(q.get("status", "503")), headers=extra
                )
            return JSONResponse({"ok": True, "hit": n})
        if kind == "limited":
            if failing:
                return Response(
                    "slow down", status_code=429, headers={"Retry-After": q["retry_after"]}
                )
            return JSONResponse({"ok": True, "hit": n})
        if kind == "top-throttle":
            if failing:
                return _top_error(
                    7, "App Call Limited", "accesscontrol.limited-by-app-access-count"
                )
            return JSONResponse({"ok": True, "hit": n})
        if kind == "isp":
            if failing:
                return _top_error(15, "Remote service error", "isp.top-remote-connection-timeout")
            return JSONResponse({"ok": True, "hit": n})
        if kind == "slow":
            if failing:
                await asyncio.sleep(float(q["delay"]))
            return JSONResponse({"ok": True, "hit": n})
        if kind == "status":
            return Response("no", status_code=int(q["code"]))
        if kind == "business":
            return _top_error(15, "Remote service error", "isv.invalid-parameter:tid")
        if kind == "top":
            if failing:
                return Response("busy", status_code=503)
            params = dict(q)
            if request.method == "POST":
                params.update({k: str(v) for k, v in (await request.form()).items()})
            sign = params.get("sign", "")
            expected = top_sign(params, SECRET, params.get("sign_method", "md5"))  # type: ignore[arg-type]
            if not constant_time_equals(expected, sign):
                return _top_error(25, "Invalid signature")
            if params.get("session") != SESSION:
                return _top_error(27, "Invalid session", "invalid-sessionkey")
            return JSONResponse({"ok": True, "hit": n, "nick": params.get("nick")})
        return Response("unknown", status_code=404)

    return Starlette(routes=[Route("/{kind}/{key}", behave, methods=["GET", "POST"])])


@dataclass
class Server:
    url: str
    hits: Counter[str]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    hits: Counter[str] = Counter()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        build_app(hits),
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    yield Server(f"http://127.0.0.1:{port}", hits)
    srv.should_exit = True
    thread.join(5)
    sock.close()


def key() -> str:
    return uuid.uuid4().hex


# --- helpers -------------------------------------------------------------------------------------


class FakeClock:
    """A clock that only moves when slept on; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


class MaxRandom(random.Random):
    """Jitter always at its upper bound, to check the exponential caps exactly."""

    def uniform(self, a: float, b: float) -> float:
        return b


def top_classifier(response: httpx.Response, data: Any) -> Outcome | None:
    """What a TOP connector would declare: throttling and auth codes."""
    if isinstance(data, dict) and "error_response" in data:
        err = data["error_response"]
        code = str(err.get("code"))
        sub = err.get("sub_code")
        msg = err.get("msg")
        if code == "7" or (sub or "").startswith("accesscontrol."):
            return Outcome(Verdict.THROTTLED, code=code, message=msg, sub_code=sub)
        if code in ("25", "26", "27"):
            return Outcome(Verdict.AUTH, code=code, message=msg, sub_code=sub)
        if (sub or "").startswith("isp."):
            return Outcome(Verdict.TRANSIENT, code=code, message=msg, sub_code=sub)
        return Outcome(Verdict.ERROR, code=code, message=msg, sub_code=sub)
    return None


def make_client(server: Server, clock: FakeClock | None = None, **kwargs: Any) -> ChannelHTTPClient:
    clock = clock or FakeClock()
    kwargs.setdefault("retry", RetryPolicy(max_attempts=4, base_delay=0.5, deadline=60))
    kwargs.setdefault("timeouts", Timeouts(connect=2, read=5))
    kwargs.setdefault("rng", random.Random(7))
    return ChannelHTTPClient(
        server.url,
        account=kwargs.pop("account", "shop-1"),
        classifier=kwargs.pop("classifier", top_classifier),
        clock=clock,
        sleep=clock.sleep,
        **kwargs,
    )


def make_top_signer(secret: str, signs: list[str]) -> Any:
    calls = {"n": 0}

    def signer(req: ChannelRequest) -> ChannelRequest:
        calls["n"] += 1
        req.params.update(
            app_key=APP_KEY,
            session=SESSION,
            sign_method="hmac-sha256",
            v="2.0",
            format="json",
            timestamp=f"2026-11-30 10:00:{calls['n']:02d}",  # fresh for every attempt
        )
        req.params["sign"] = top_sign({**req.params, **(req.data or {})}, secret, "hmac-sha256")
        signs.append(req.params["sign"])
        return req

    return signer


# --- success, signing ----------------------------------------------------------------------------


def test_signed_call_is_accepted_by_the_server(server):
    signs: list[str] = []
    with make_client(server, signer=make_top_signer(SECRET, signs)) as c:
        got = c.get(f"/top/{key()}", params={"method": "taobao.user.seller.get", "nick": "小店"})
        assert got.status == 200 and got.data["ok"] and got.data["nick"] == "小店"
        assert got.attempts == 1
        post = c.post(f"/top/{key()}", data={"method": "x.y", "nick": "张三&李四=王五"})
        assert post.data["nick"] == "张三&李四=王五"
    assert len(signs) == 2


def test_cookies_a_platform_sets_are_never_sent_back():
    seen: list[str | None] = []

    def platform(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, json={"ok": True}, headers={"set-cookie": "session=abc; Path=/"})

    with ChannelHTTPClient("https://gw.example.com", transport=httpx.MockTransport(platform)) as c:
        for _ in range(3):
            assert c.post("/router/rest", data={"method": "x.y"}).data == {"ok": True}
    assert seen == [None, None, None]


def test_a_call_goes_out_as_httpx_client_would_build_it():
    """The transport is called directly (not through httpx.Client.send): the request it gets
    is the one the client would have built, base URL, headers, query and body alike."""
    got: list[httpx.Request] = []

    def platform(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(200, json={"ok": True})

    with ChannelHTTPClient(
        "https://gw.example.com/api",
        headers={"X-App": "erp", "User-Agent": "erp-test"},
        timeouts=Timeouts(connect=1, read=2, write=3, pool=4),
        transport=httpx.MockTransport(platform),
    ) as c:
        result = c.post(
            "/router/rest?sign=AB",
            params={"v": "2.0"},
            headers={"X-Call": "1"},
            data={"method": "x.y", "nick": "张三&李四"},
        )
        assert result.data == {"ok": True}
        assert result.response.request is got[0]
        assert result.response.elapsed.total_seconds() >= 0
        c.post("https://other.example.com/x", json={"a": 1})
        expected = [
            c._client.build_request(
                "POST",
                "/router/rest",
                params={"sign": "AB", "v": "2.0"},
                headers={"X-Call": "1"},
                data={"method": "x.y", "nick": "张三&李四"},
            ),
            c._client.build_request("POST", "https://other.example.com/x", json={"a": 1}),
        ]
    assert [r.url for r in got] == [e.url for e in expected]
    assert str(got[0].url).startswith("https://gw.example.com/api/router/rest?")
    assert [r.headers.raw for r in got] == [e.headers.raw for e in expected]
    assert [r.read() for r in got] == [e.read() for e in expected]
    assert [r.extensions["timeout"] for r in got] == [
        {"connect": 1.0, "read": 2.0, "write": 3.0, "pool": 4.0}
    ] * 2


def test_every_attempt_is_signed_afresh(server):
    signs: list[str] = []
    clock = FakeClock()
    k = key()
    with make_client(server, clock, signer=make_top_signer(SECRET, signs)) as c:
        got = c.post(f"/top/{k}?fail=2", data={"method": "x.y", "nick": "重试"})
    # the server verified the third signature; each attempt had its own timestamp and sign
    assert got.attempts == 3 and got.data["nick"] == "重试"
    assert len(signs) == 3 and len(set(signs)) == 3


def test_bad_signature_is_an_auth_error_not_retried(server):
    k = key()
    with (
        make_client(server, signer=make_top_signer("wrong-secret", [])) as c,
        pytest.raises(AuthError) as info,
    ):
        c.get(f"/top/{k}", params={"method": "taobao.user.seller.get"})
    assert info.value.code == "25"
    assert info.value.attempts == 1 and server.hits[k] == 1
    assert isinstance(info.value, ChannelAuthError) and not isinstance(info.value, PlatformError)


def test_http_401_is_an_auth_error(server):
    with make_client(server) as c, pytest.raises(AuthError):
        c.get(f"/status/{key()}", params={"code": "401"})


# --- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
def test_retries_transient_statuses_with_capped_exponential_backoff(server, status):
    clock = FakeClock()
    k = key()
    with make_client(server, clock, rng=MaxRandom()) as c:
        got = c.get(f"/flaky/{k}", params={"fail": "3", "status": str(status)})
    assert got.attempts == 4 and server.hits[k] == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_full_jitter_stays_within_bounds(server):
    clock = FakeClock()
    k = key()
    policy = RetryPolicy(max_attempts=6, base_delay=0.2, max_delay=1.0, deadline=100)
    with make_client(server, clock, retry=policy, rng=random.Random(1)) as c:
        got = c.get(f"/flaky/{k}", params={"fail": "5"})
    assert got.attempts == 6
    caps = [0.2, 0.4, 0.8, 1.0, 1.0]
    assert len(clock.sleeps) == 5
    for delay, cap in zip(clock.sleeps, caps, strict=True):
        assert 0 <= delay <= cap
    assert len(set(clock.sleeps)) == 5  # jittered, not a fixed schedule


def test_gives_up_after_max_attempts(server):
    clock = FakeClock()
    k = key()
    with (
        make_client(server, clock, retry=RetryPolicy(max_attempts=3)) as c,
        pytest.raises(TransientError) as info,
    ):
        c.get(f"/flaky/{k}", params={"fail": "10"})
    assert not isinstance(info.value, ThrottledError)
    assert info.value.attempts == 3 and server.hits[k] == 3
    assert info.value.status == 503
    assert len(clock.sleeps) == 2


def test_total_deadline_stops_retrying(server):
    clock = FakeClock()
    k = key()
    policy = RetryPolicy(max_attempts=10, base_delay=4, max_delay=100, deadline=10)
    with (
        make_client(server, clock, retry=policy, rng=MaxRandom()) as c,
        pytest.raises(TransientError, match="deadline"),
    ):
        c.get(f"/flaky/{k}", params={"fail": "10"})
    # 4 s, then 8 s would overrun the 10 s deadline: two attempts only
    assert clock.sleeps == [4.0] and server.hits[k] == 2


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422, 500])
def test_no_retry_on_other_http_errors(server, status):
    clock = FakeClock()
    k = key()
    with make_client(server, clock) as c, pytest.raises(PlatformError) as info:
        c.get(f"/status/{k}", params={"code": str(status)})
    assert not isinstance(info.value, AuthError) or status == 401
    assert info.value.code == str(status) and info.value.status == status
    assert server.hits[k] == 1 and clock.sleeps == []


def test_no_retry_on_business_error(server):
    clock = FakeClock()
    k = key()
    with make_client(server, clock) as c, pytest.raises(PlatformError) as info:
        c.get(f"/business/{k}")
    assert info.value.code == "15" and isinstance(info.value, ChannelRejected)
    assert info.value.sub_code == "isv.invalid-parameter:tid"
    assert info.value.message == "Remote service error"
    assert server.hits[k] == 1 and clock.sleeps == []


def test_platform_transient_code_is_retried(server):
    clock = FakeClock()
    k = key()
    with make_client(server, clock) as c:
        got = c.get(f"/isp/{k}", params={"fail": "2"})
    assert got.attempts == 3 and server.hits[k] == 3 and len(clock.sleeps) == 2


def test_redirects_are_not_followed_nor_ok(server):
    with make_client(server) as c, pytest.raises(PlatformError) as info:
        c.get(f"/status/{key()}", params={"code": "302"})
    assert info.value.status == 302


def test_retry_after_is_honoured(server):
    clock = FakeClock()
    k = key()
    with make_client(server, clock) as c:
        got = c.get(f"/limited/{k}", params={"fail": "2", "retry_after": "3"})
    assert got.attempts == 3
    assert clock.sleeps == [3.0, 3.0]


def test_retry_after_on_503(server):
    clock = FakeClock()
    k = key()
    with make_client(server, clock) as c:
        got = c.get(f"/flaky/{k}", params={"fail": "1", "retry_after": "7"})
    assert got.attempts == 2 and clock.sleeps == [7.0]


def test_retry_after_beyond_the_deadline_gives_up_at_once(server):
    clock = FakeClock()
    k = key()
    with (
        make_client(server, clock, retry=RetryPolicy(deadline=5)) as c,
        pytest.raises(ThrottledError) as info,
    ):
        c.get(f"/limited/{k}", params={"fail": "1", "retry_after": "30"})
    assert isinstance(info.value, TransientError) and isinstance(info.value, ChannelThrottled)
    assert info.value.retry_after == 30.0
    assert info.value.status == 429 and clock.sleeps == [] and server.hits[k] == 1


def test_platform_throttle_code_pauses_the_account_bucket(server):
    clock = FakeClock()
    limiter = RateLimiter(qps=100, clock=clock, sleep=clock.sleep)
    k = key()
    policy = RetryPolicy(max_attempts=4, base_delay=0.1, throttle_pause=2.0)
    with make_client(server, clock, limiter=limiter, retry=policy) as c:
        got = c.get(f"/top-throttle/{k}", params={"fail": "2"})
    assert got.attempts == 3
    # the pause is served by the limiter (the bucket waits), at least throttle_pause each time
    assert len(clock.sleeps) == 2 and all(s >= 2.0 for s in clock.sleeps)
    # another account is not held up by shop-1's pause
    limiter.pause("shop-1", 50)
    before = clock.now
    limiter.acquire("shop-2")
    assert clock.now == before


def test_platform_throttle_exhausted_raises_throttled(server):
    clock = FakeClock()
    k = key()
    with (
        make_client(server, clock, retry=RetryPolicy(max_attempts=2, throttle_pause=1)) as c,
        pytest.raises(ThrottledError) as info,
    ):
        c.get(f"/top-throttle/{k}", params={"fail": "5"})
    assert info.value.code == "7" and info.value.attempts == 2
    assert info.value.sub_code == "accesscontrol.limited-by-app-access-count"


def test_read_timeout_is_retried(server):
    clock = FakeClock()
    k = key()
    timeouts = Timeouts(connect=2, read=0.3)
    with make_client(server, clock, timeouts=timeouts) as c:
        got = c.get(f"/slow/{k}", params={"fail": "1", "delay": "1.5"})
    assert got.attempts == 2 and len(clock.sleeps) == 1


def test_read_timeout_exhausted(server):
    k = key()
    timeouts = Timeouts(connect=2, read=0.2)
    with make_client(server, timeouts=timeouts, retry=RetryPolicy(max_attempts=2)) as c:
        started = time.monotonic()
        with pytest.raises(TransientError) as info:
            c.get(f"/slow/{k}", params={"fail": "5", "delay": "1.5"})
        elapsed = time.monotonic() - started
    assert info.value.code == "timeout" and info.value.attempts == 2
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert elapsed < 1.4  # gave up on the read timeout, did not wait for the server


def test_connect_error_is_retried():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    clock = FakeClock()
    client = ChannelHTTPClient(
        f"http://127.0.0.1:{port}",
        account="shop-9",
        retry=RetryPolicy(max_attempts=3),
        clock=clock,
        sleep=clock.sleep,
    )
    with client, pytest.raises(TransientError) as info:
        client.get("/ok/x")
    assert info.value.code == "network" and info.value.attempts == 3
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(clock.sleeps) == 2


def test_parse_retry_after():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    from datetime import UTC, datetime

    now = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Mon, 30 Nov 2026 10:00:07 GMT", now) == 7.0
    assert parse_retry_after("Mon, 30 Nov 2026 09:00:00 GMT", now) == 0.0


# --- rate limiting -------------------------------------------------------------------------------


def test_rate_limiter_spaces_calls_on_a_fake_clock():
    clock = FakeClock()
    limiter = RateLimiter(qps=4, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(9):
        limiter.acquire("a")
    assert clock.now - start >= (9 - 1) / 4
    assert clock.now - start == pytest.approx(2.0)


def test_rate_limiter_burst_and_per_account_rates():
    clock = FakeClock()
    limiter = RateLimiter(qps=2, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        limiter.acquire("a")
    assert clock.sleeps == []  # the burst is free
    limiter.acquire("a")
    assert clock.sleeps == [pytest.approx(0.5)]
    limiter.set_rate("b", qps=10)
    t0 = clock.now
    for _ in range(11):
        limiter.acquire("b")
    assert clock.now - t0 == pytest.approx(1.0)


def test_a_request_counted_as_several_calls_holds_back_the_calls_after_it():
    clock = FakeClock()
    limiter = RateLimiter(qps=10, clock=clock, sleep=clock.sleep)
    start = clock.now
    assert limiter.acquire("a", 5) == 0  # goes when one call could
    limiter.acquire("a")  # waits for the five
    assert clock.now - start == pytest.approx(0.5)
    limiter.acquire("b")  # another account's bucket is its own
    assert clock.now - start == pytest.approx(0.5)


def test_rate_limiter_pause():
    clock = FakeClock()
    limiter = RateLimiter(qps=10, clock=clock, sleep=clock.sleep)
    limiter.acquire("a")
    limiter.pause("a", 5)
    assert limiter.paused_for("a") == 5
    limiter.acquire("a")
    assert clock.now == pytest.approx(1005.0)


def test_rate_limiter_is_thread_safe_in_real_time():
    limiter = RateLimiter(qps=40)
    started = time.monotonic()
    done: list[float] = []

    def worker() -> None:
        for _ in range(4):
            limiter.acquire("shared")
            done.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 16
    assert max(done) - started >= (16 - 1) / 40 - 0.01


def test_shared_limiter_is_one_per_name():
    a = shared_limiter("test-platform", qps=5)
    assert shared_limiter("test-platform", qps=99) is a and a.qps == 5
    assert shared_limiter("other-platform", qps=5) is not a


def test_client_respects_qps_against_the_server(server):
    limiter = RateLimiter(qps=20)
    client = ChannelHTTPClient(server.url, account="shop-q", limiter=limiter)
    k = key()
    with client:
        started = time.monotonic()
        for _ in range(6):
            client.get(f"/ok/{k}")
        elapsed = time.monotonic() - started
    assert server.hits[k] == 6
    assert elapsed >= (6 - 1) / 20 - 0.01


# --- logs ----------------------------------------------------------------------------------------


def test_every_attempt_is_logged_without_secrets(server, caplog):
    caplog.set_level(logging.INFO, logger="erp_core.channels.http")
    signs: list[str] = []
    clock = FakeClock()
    k = key()
    with make_client(
        server, clock, signer=make_top_signer(SECRET, signs), secrets=[SECRET, SESSION]
    ) as c:
        c.get(f"/top/{k}", params={"method": "taobao.trade.get", "access_token": "tok-abcdef"})
        c.get(f"/flaky/{k}x", params={"fail": "1", "refresh_token": "ref-123456"})
    records = [r for r in caplog.records if r.name == "erp_core.channels.http"]
    assert len(records) == 3
    ok = records[0]
    assert ok.channel_method == "GET"
    assert ok.channel_status == 200
    assert ok.channel_attempt == 1
    assert ok.channel_account == "shop-1"
    assert ok.channel_outcome == "ok"
    assert "method=taobao.trade.get" in ok.channel_url
    assert isinstance(ok.channel_duration_ms, float)
    assert [r.channel_attempt for r in records[1:]] == [1, 2]
    assert records[1].levelno == logging.WARNING and records[1].channel_status == 503
    everything = caplog.text + " ".join(str(r.__dict__) for r in records)
    for secret in (SECRET, SESSION, "tok-abcdef", "ref-123456", *signs):
        assert secret not in everything
    assert "session=***" in ok.getMessage() and "sign=***" in ok.getMessage()


# --- redaction -----------------------------------------------------------------------------------


def test_sensitive_keys():
    sensitive = ["sign", "SIGN", "App_Secret", "access-token", "Authorization", "session"]
    sensitive += ["private_key", "refresh_token", "seller_access_token", "msgSecret", "password"]
    for k in sensitive:
        assert is_sensitive_key(k), k
    for k in ("sign_method", "sign_type", "app_key", "method", "nick", "timestamp"):
        assert not is_sensitive_key(k), k


def test_redact_structures_and_text():
    r = Redactor()
    r.register_secret("my-very-secret", "ab")  # too short to register: "ab" stays readable
    value = {
        "App_Secret": "x1",
        "nested": [{"Authorization": "Bearer abc"}, ("token", {"PASSWORD": "p"})],
        "url": "https://gw.example.com/router?session=s1&sign=S2&nick=ab&method=m",
        "form": "app_key=1&sign=ABC&biz_content=%7B%7D",
        "json": '{"access_token": "zz", "n": 1, "refresh_token":"rr"}',
        "header": "Authorization: WECHATPAY2-SHA256-RSA2048 mchid=1",
        "note": "contains my-very-secret and my-very-secret again, urlencoded my-very-secret",
        "n": 5,
        "sign": "",
    }
    out = r.redact(value)
    assert out["App_Secret"] == "***"
    assert out["nested"][0] == {"Authorization": "***"}
    assert out["nested"][1] == ("token", {"PASSWORD": "***"})
    assert out["url"] == "https://gw.example.com/router?session=***&sign=***&nick=ab&method=m"
    assert out["form"] == "app_key=1&sign=***&biz_content=%7B%7D"
    assert out["json"] == '{"access_token": "***", "n": 1, "refresh_token":"***"}'
    assert out["header"] == "Authorization: ***"
    assert "my-very-secret" not in out["note"]
    assert out["n"] == 5 and out["sign"] == ""
    assert value["App_Secret"] == "x1"  # the input is not modified


def test_registered_secret_is_masked_url_encoded_too():
    r = Redactor()
    r.register_secret("密钥 with space&amp")
    raw = "密钥 with space&amp"
    text = r.redact_text(f"a {raw} b {quote(raw, safe='')} c {quote_plus(raw)} d")
    assert text == "a *** b *** c *** d"


def test_registered_secrets_are_bounded():
    r = Redactor(max_secrets=5)
    for i in range(5):
        r.register_secret(f"token-number-{i}")  # 1 form each (nothing to URL-encode)
    r.register_secret("token-number-1")  # refreshed: becomes the newest
    r.register_secret("token-number-5", "token-number-6")
    text = r.redact_text(" ".join(f"token-number-{i}" for i in range(7)))
    assert text == "token-number-0 *** token-number-2 *** *** *** ***"


def test_redact_url_userinfo():
    assert Redactor().redact_url("https://user:pw@host/p?a=1") == "https://***@host/p?a=1"


def test_redacting_filter_on_a_handler(caplog):
    r = Redactor()
    r.register_secret("S3CR3T-VALUE")
    log = logging.getLogger("erp_core.tests.redact")
    filt = RedactingFilter(r)
    caplog.handler.addFilter(filt)
    try:
        with caplog.at_level(logging.INFO, logger="erp_core.tests.redact"):
            log.info("calling %s with %s", "https://x/y?access_token=t0k3n", {"app_secret": "a"})
            log.info("secret %s inline S3CR3T-VALUE", "S3CR3T-VALUE", extra={"session": "sess"})
            log.info("mapping %(token)s", {"token": "abcd1234"})
            log.info("count %d", 3, extra={"payload": {"password": "pw", "ok": 1}})
    finally:
        caplog.handler.removeFilter(filt)
    text = caplog.text
    for leaked in ("t0k3n", "'a'", "S3CR3T-VALUE", "abcd1234"):
        assert leaked not in text
    assert "count 3" in text
    assert caplog.records[1].session == "***"
    assert caplog.records[3].payload == {"password": "***", "ok": 1}


def test_redacting_filter_covers_tracebacks(caplog):
    r = Redactor()
    r.register_secret("tb-secret-999")
    log = logging.getLogger("erp_core.tests.redact")
    filt = RedactingFilter(r)
    caplog.handler.addFilter(filt)
    try:
        with caplog.at_level(logging.INFO, logger="erp_core.tests.redact"):
            try:
                raise ValueError("bad token tb-secret-999 in ?access_token=tok9999")
            except ValueError:
                log.exception("call failed")
    finally:
        caplog.handler.removeFilter(filt)
    assert "ValueError" in caplog.text
    assert "tb-secret-999" not in caplog.text and "tok9999" not in caplog.text
