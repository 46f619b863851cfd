"""The HTTP client channel connectors use (synchronous, on httpx).

One :class:`ChannelHTTPClient` per connector (or per account); every call goes through:

1. the per-account :class:`RateLimiter` (a token bucket at the platform's QPS, paused for a
   while when the platform answers "throttled");
2. the connector's signing hook, called **for every attempt** (so timestamps are fresh) with a
   :class:`ChannelRequest` it returns signed;
3. httpx with separate connect/read timeouts, clipped to the call's total deadline;
4. the connector's classifier, which reads the parsed response and says whether it is a success,
   a business error, an auth error (token expired, bad signature), a throttle or a transient
   failure;
5. retries with exponential back-off and full jitter **only** on transient failures (connect
   errors, timeouts, HTTP 429/502/503/504, codes the classifier calls transient or throttled),
   honouring ``Retry-After``, within a maximum number of attempts and a total deadline;
6. one structured log record per attempt (method, URL, status, duration, attempt, account,
   outcome), redacted by :mod:`erp_core.channels.redact`: no secret ever reaches the logs.

Errors are typed: :class:`TransientError` (retries exhausted), :class:`ThrottledError` (a
:class:`TransientError` whose last failure was a throttle), :class:`PlatformError` (business
error with the platform's code and message, never retried) and :class:`AuthError` (a
:class:`PlatformError` the caller handles by refreshing the token).
"""

from __future__ import annotations

import email.utils
import enum
import http.cookiejar
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from erp_core.channels.interfaces import (
    ChannelAuthError,
    ChannelError,
    ChannelRejected,
    ChannelThrottled,
)
from erp_core.channels.redact import RedactingFilter, Redactor, default_redactor
from erp_core.channels.transport import default_transport

__all__ = [
    "AuthError",
    "CallResult",
    "ChannelHTTPClient",
    "ChannelHTTPError",
    "ChannelRequest",
    "Outcome",
    "PlatformError",
    "RateLimiter",
    "ResponseClassifier",
    "RetryPolicy",
    "Signer",
    "ThrottledError",
    "Timeouts",
    "TransientError",
    "Verdict",
    "default_classifier",
    "parse_retry_after",
    "shared_limiter",
]

logger = logging.getLogger("erp_core.channels.http")
# Records are redacted where they are made; this also covers anything else logged here.
logger.addFilter(RedactingFilter())
# httpx logs every request's full URL at INFO: platforms that put a token in the query string
# (Taobao's ``session``) would leak it there, so its records are redacted too.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(RedactingFilter())


# --- errors -------------------------------------------------------------------------------------


class ChannelHTTPError(ChannelError):
    """Base of the errors a channel call raises (a :class:`ChannelError` of the SDK).

    ``code``/``sub_code``/``message`` are the platform's (``code`` is ``""`` when there is
    none, e.g. ``"timeout"`` or ``"network"`` for failures before an answer); ``status`` is the
    HTTP status of the last answer, ``attempts`` how many were made.
    """

    def __init__(
        self,
        message: str,
        *,
        account: str | None = None,
        attempts: int = 0,
        status: int | None = None,
        code: str | None = None,
        sub_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.account = account
        self.attempts = attempts
        self.status = status
        self.code: str = code or ""
        self.sub_code = sub_code
        self.retry_after = retry_after


class TransientError(ChannelHTTPError):
    """A transient failure that persisted through every allowed attempt (or the deadline)."""


class ThrottledError(TransientError, ChannelThrottled):
    """The platform kept throttling the account until attempts or the deadline ran out
    (also a :class:`ChannelThrottled`, so the kernel backs off)."""


class PlatformError(ChannelHTTPError, ChannelRejected):
    """A business error answered by the platform (``code``/``message``); never retried
    (also a :class:`ChannelRejected`)."""


class AuthError(ChannelHTTPError, ChannelAuthError):
    """Token expired or invalid, or the signature was rejected: refresh the token and retry
    (also a :class:`ChannelAuthError`; deliberately not a :class:`PlatformError`)."""


# --- requests, responses, classification --------------------------------------------------------


@dataclass
class ChannelRequest:
    """What the signing hook receives and returns (a fresh copy for every attempt)."""

    method: str
    url: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] | None = None
    json: Any = None
    content: bytes | None = None
    account: str | None = None
    attempt: int = 1


#: The signing hook: receives the request and returns it signed (may mutate and return it).
Signer = Callable[[ChannelRequest], ChannelRequest]


class Verdict(enum.Enum):
    OK = "ok"
    ERROR = "error"  # business error: PlatformError, never retried
    AUTH = "auth"  # token expired / invalid signature: AuthError, never retried
    THROTTLED = "throttled"  # retried after pausing the account's bucket
    TRANSIENT = "transient"  # retried with back-off


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    code: str | None = None
    message: str | None = None
    sub_code: str | None = None
    retry_after: float | None = None  # seconds the platform asked us to wait


#: The connector's classifier: ``(response, parsed body or None)`` → an :class:`Outcome`, or
#: ``None`` to fall back to :func:`default_classifier` (HTTP status only).
ResponseClassifier = Callable[[httpx.Response, Any], Outcome | None]


def default_classifier(response: httpx.Response, data: Any) -> Outcome:
    """Classify by HTTP status: 2xx ok; 429 throttled; 502/503/504 transient; 401 auth;
    anything else (redirects included: the client does not follow them) an error."""
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(Verdict.OK)
    message = response.reason_phrase or f"HTTP {status}"
    if status == 429:
        return Outcome(Verdict.THROTTLED, code=str(status), message=message)
    if status in (502, 503, 504):
        return Outcome(Verdict.TRANSIENT, code=str(status), message=message)
    if status == 401:
        return Outcome(Verdict.AUTH, code=str(status), message=message)
    return Outcome(Verdict.ERROR, code=str(status), message=message)


@dataclass(frozen=True)
class CallResult:
    response: httpx.Response
    data: Any  # the parsed JSON body (fractions as Decimal), or None
    attempts: int
    duration: float  # seconds, on the client's clock, for the whole call

    @property
    def status(self) -> int:
        return self.response.status_code


# --- policy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeouts:
    """Per-attempt timeouts in seconds (read is clipped to what is left of the deadline)."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 5.0


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on transient failures: full-jitter exponential back-off, bounded attempts and
    total deadline. ``Retry-After`` (capped at ``max_retry_after``) replaces the back-off."""

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    deadline: float = 60.0
    max_retry_after: float = 60.0
    throttle_pause: float = 1.0  # minimum pause of a throttled account without Retry-After

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.deadline <= 0:
            raise ValueError("delays must be >= 0 and deadline > 0")

    def backoff_cap(self, attempt: int) -> float:
        """Upper bound of the delay after failed attempt ``attempt`` (1-based)."""
        return min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in ``[0, backoff_cap(attempt)]``."""
        return rng.uniform(0.0, self.backoff_cap(attempt))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` if absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# --- rate limiting ------------------------------------------------------------------------------


class RateLimiter:
    """Thread-safe token bucket per account (GCRA with reservations).

    ``qps`` tokens per second, at most ``burst`` at once (default 1: evenly spaced, so N calls
    take at least (N-1)/qps seconds). :meth:`pause` stops an account's bucket for a while after
    the platform throttled it. Each account can have its own rate (:meth:`set_rate`).
    """

    def __init__(
        self,
        qps: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rates: dict[str, tuple[float, float]] = {}
        self._tat: dict[str, float] = {}  # theoretical arrival time per account
        self._paused_until: dict[str, float] = {}

    def set_rate(self, account: str, qps: float, burst: float = 1.0) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be > 0 and burst >= 1")
        with self._lock:
            self._rates[account] = (qps, burst)

    def pause(self, account: str, seconds: float) -> None:
        """No token for ``account`` during the next ``seconds``."""
        with self._lock:
            until = self._clock() + max(0.0, seconds)
            self._paused_until[account] = max(self._paused_until.get(account, 0.0), until)

    def paused_for(self, account: str) -> float:
        with self._lock:
            return max(0.0, self._paused_until.get(account, 0.0) - self._clock())

    def _reserve(self, account: str, tokens: int) -> float:
        with self._lock:
            qps, burst = self._rates.get(account, (self.qps, self.burst))
            interval = 1.0 / qps
            tolerance = (burst - 1.0) * interval
            now = self._clock()
            start = max(now, self._paused_until.get(account, now))
            tat = self._tat.get(account, start)
            allowed = max(start, tat - tolerance)
            self._tat[account] = max(tat, allowed) + interval * tokens
            return allowed - now

    def acquire(self, account: str, tokens: int = 1) -> float:
        """Block until ``account`` may make a call; returns the seconds waited. A request that
        the platform counts as several calls (a batch) takes ``tokens``: it goes when one
        call could, and the calls after it wait for all of them."""
        waited = 0.0
        while True:
            wait = self._reserve(account, tokens)
            if wait <= 0:
                return waited
            self._sleep(wait)
            waited += wait
            # A pause that arrived while we slept pushes us back once more.
            if self.paused_for(account) <= 0:
                return waited


_shared_limiters: dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(name: str, qps: float, burst: float = 1.0) -> RateLimiter:
    """The process-wide limiter called ``name`` (e.g. the connector's name), created at the
    given rate the first time; every client of that platform should share it so that an
    account's QPS holds however many clients serve it."""
    with _shared_lock:
        limiter = _shared_limiters.get(name)
        if limiter is None:
            limiter = _shared_limiters[name] = RateLimiter(qps, burst)
        return limiter


# --- the client ---------------------------------------------------------------------------------


class _NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that keeps nothing. Platform APIs authenticate each call by its signature
    and token, so a cookie that a platform, or a proxy in front of it, sets is never sent back:
    no state passes from one call to the next. It also spares httpx the work of storing
    cookies on every answer (about a fifth of a loopback call)."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None

    def add_cookie_header(self, request: Any) -> None:
        return None


class ChannelHTTPClient:
    """Synchronous HTTP client for connectors; see the module docstring.

    ``secrets`` (app secret, tokens…) are registered with the redactor so they are masked in
    every log record wherever they appear. ``clock``, ``sleep`` and ``rng`` are injectable for
    tests; ``transport`` is handed to httpx. Without one, calls go through a
    :class:`~erp_core.channels.transport.KeepAliveTransport` (``http.client`` with pooled
    keep-alive connections: about a third less CPU per call than httpx's own transport), or
    through httpx's own when the environment names a proxy.
    """

    def __init__(
        self,
        base_url: str = "",
        *,
        account: str | None = None,
        signer: Signer | None = None,
        classifier: ResponseClassifier | None = None,
        limiter: RateLimiter | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str | None] = (),
        redactor: Redactor | None = None,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.account = account
        self.signer = signer
        self.classifier = classifier
        self.limiter = limiter
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.redactor = redactor or default_redactor
        self.redactor.register_secret(*secrets)
        self.log = log or logger
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        chosen = transport if transport is not None else default_transport()
        self._client = httpx.Client(
            base_url=base_url,
            headers=dict(headers or {}),
            transport=chosen,
            follow_redirects=False,
            cookies=_NoCookies(),
        )
        #: the transport every request goes to, called directly (see :meth:`_send`); None:
        #: httpx's own, chosen per URL (proxies named by the environment)
        self._direct = chosen
        #: request URL as given -> as sent (the base URL joined as httpx joins it)
        self._urls: dict[str, httpx.URL] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ChannelHTTPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # convenience ---------------------------------------------------------------------------------

    def get(self, url: str, **kwargs: Any) -> CallResult:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> CallResult:
        return self.request("POST", url, **kwargs)

    # the call ------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        account: str | None = None,
        retry: RetryPolicy | None = None,
        cost: int = 1,
    ) -> CallResult:
        """Make one logical call (several attempts at most); returns the successful response
        or raises a :class:`ChannelHTTPError` subclass. ``cost``: how many calls of the
        account's rate one attempt counts for (a batch request of several API calls)."""
        policy = retry or self.retry
        account = account if account is not None else self.account
        bucket = account if account is not None else "-"
        # A query string in ``url`` joins ``params`` (which win), so that the signing hook sees
        # every parameter and httpx does not drop it when params are added.
        query: dict[str, str] = {}
        if "?" in url:
            parsed_url = httpx.URL(url)
            query = dict(parsed_url.params.multi_items())
            if query:
                url = str(parsed_url.copy_with(query=None))
        base = ChannelRequest(
            method=method.upper(),
            url=url,
            params={**query, **(params or {})},
            headers=dict(headers or {}),
            data=dict(data) if data is not None else None,
            json=json,
            content=content,
            account=account,
        )
        started = self._clock()
        deadline = started + policy.deadline
        attempt = 0
        while True:
            attempt += 1
            if self.limiter is not None:
                self.limiter.acquire(bucket, cost)
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise TransientError(
                    "deadline exceeded before the call could be made",
                    account=account,
                    attempts=attempt - 1,
                )
            req = replace(
                base,
                params=dict(base.params),
                headers=dict(base.headers),
                data=dict(base.data) if base.data is not None else None,
                attempt=attempt,
            )
            if self.signer is not None:
                req = self.signer(req)
            outcome, response, parsed, error = self._attempt(req, remaining, attempt, bucket)
            if outcome.verdict is Verdict.OK and response is not None:
                return CallResult(response, parsed, attempt, self._clock() - started)
            status = response.status_code if response is not None else None
            if outcome.verdict is Verdict.AUTH:
                raise AuthError(
                    outcome.message or "authentication failed",
                    account=account,
                    attempts=attempt,
                    status=status,
                    code=outcome.code,
                    sub_code=outcome.sub_code,
                )
            if outcome.verdict is Verdict.ERROR:
                raise PlatformError(
                    outcome.message or "platform error",
                    account=account,
                    attempts=attempt,
                    status=status,
                    code=outcome.code,
                    sub_code=outcome.sub_code,
                )
            throttled = outcome.verdict is Verdict.THROTTLED
            exc_type = ThrottledError if throttled else TransientError
            message = outcome.message or ("throttled" if throttled else "transient failure")

            if attempt >= policy.max_attempts:
                raise _exhausted(
                    exc_type, message, "retries exhausted", account, attempt, status, outcome, error
                )
            if outcome.retry_after is not None:
                delay = min(outcome.retry_after, policy.max_retry_after)
            else:
                delay = policy.backoff(attempt, self._rng)
                if throttled:
                    delay = max(delay, policy.throttle_pause)
            if self._clock() + delay >= deadline:
                raise _exhausted(
                    exc_type, message, "deadline exceeded", account, attempt, status, outcome, error
                )
            if throttled and self.limiter is not None:
                # The pause holds every call of this account, not only this one; our next
                # acquire() waits it out.
                self.limiter.pause(bucket, delay)
            else:
                self._sleep(delay)

    def _attempt(
        self, req: ChannelRequest, remaining: float, attempt: int, bucket: str
    ) -> tuple[Outcome, httpx.Response | None, Any, Exception | None]:
        t = self.timeouts
        timeout = {
            "connect": min(t.connect, remaining),
            "read": min(t.read, remaining),
            "write": min(t.write, remaining),
            "pool": min(t.pool, remaining),
        }
        t0 = self._clock()
        response: httpx.Response | None = None
        parsed: Any = None
        error: Exception | None = None
        try:
            response = self._send(req, timeout)
        except httpx.TimeoutException as exc:
            error = exc
            outcome = Outcome(Verdict.TRANSIENT, code="timeout", message=type(exc).__name__)
        except httpx.TransportError as exc:
            # Connection refused/reset, DNS, protocol errors: the request may not have reached
            # the platform, or its answer was lost; connectors send idempotent requests.
            error = exc
            outcome = Outcome(Verdict.TRANSIENT, code="network", message=type(exc).__name__)
        else:
            parsed = _parse_body(response)
            custom = self.classifier(response, parsed) if self.classifier else None
            outcome = custom if custom is not None else default_classifier(response, parsed)
            if outcome.retry_after is None and outcome.verdict in (
                Verdict.THROTTLED,
                Verdict.TRANSIENT,
            ):
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is not None:
                    outcome = replace(outcome, retry_after=retry_after)
        self._log(req, response, outcome, attempt, bucket, self._clock() - t0)
        return outcome, response, parsed, error

    def _send(self, req: ChannelRequest, timeout: dict[str, float]) -> httpx.Response:
        """Send one attempt and read its answer whole.

        With a transport of its own (the usual case) the request is built as
        ``httpx.Client.build_request`` builds it (the client's headers, then the request's;
        the base URL joined) and handed to the transport directly: the client's cookie,
        authentication, redirect and event-hook steps, none of which a channel call uses
        (cookies are never kept, redirects never followed), cost about a fifth of a loopback
        call. Otherwise (proxies from the environment) the client sends it."""
        if self._direct is None:
            return self._client.request(
                req.method,
                req.url,
                params=req.params or None,
                headers=req.headers or None,
                data=req.data,
                json=req.json,
                content=req.content,
                timeout=httpx.Timeout(**timeout),
            )
        url = self._urls.get(req.url)
        if url is None:
            url = self._client.build_request("GET", req.url).url
            if len(self._urls) < 256:
                self._urls[req.url] = url
        headers = self._client.headers.copy()
        if req.headers:
            headers.update(req.headers)
        request = httpx.Request(
            req.method,
            url,
            params=req.params or None,
            headers=headers,
            data=req.data,
            json=req.json,
            content=req.content,
            extensions={"timeout": timeout},
        )
        started = time.perf_counter()
        response = self._direct.handle_request(request)
        response.request = request
        try:
            response.read()
        finally:
            response.close()
        response.elapsed = timedelta(seconds=time.perf_counter() - started)
        return response

    def _log(
        self,
        req: ChannelRequest,
        response: httpx.Response | None,
        outcome: Outcome,
        attempt: int,
        bucket: str,
        duration: float,
    ) -> None:
        level = logging.INFO if outcome.verdict is Verdict.OK else logging.WARNING
        if not self.log.isEnabledFor(level):
            return  # building and redacting the URL costs as much as a loopback call
        url = str(self._client.build_request(req.method, req.url, params=req.params).url)
        safe_url = self.redactor.redact_url(url)
        status = response.status_code if response is not None else None
        fields: dict[str, Any] = {
            "channel_method": req.method,
            "channel_url": safe_url,
            "channel_status": status,
            "channel_duration_ms": round(duration * 1000, 1),
            "channel_attempt": attempt,
            "channel_account": bucket,
            "channel_outcome": outcome.verdict.value,
            "channel_code": outcome.code,
        }
        self.log.log(
            level,
            "%s %s -> %s %s in %.1f ms (attempt %d, account %s)",
            req.method,
            safe_url,
            status if status is not None else "-",
            outcome.verdict.value + (f" {outcome.code}" if outcome.code else ""),
            duration * 1000,
            attempt,
            bucket,
            extra=self.redactor.redact(fields),
        )


def _exhausted(
    exc_type: type[TransientError],
    message: str,
    reason: str,
    account: str | None,
    attempt: int,
    status: int | None,
    outcome: Outcome,
    cause: Exception | None,
) -> TransientError:
    err = exc_type(
        f"{message} ({reason} after {attempt} attempt(s))",
        account=account,
        attempts=attempt,
        status=status,
        code=outcome.code,
        sub_code=outcome.sub_code,
        retry_after=outcome.retry_after,
    )
    err.__cause__ = cause
    return err


def _parse_body(response: httpx.Response) -> Any:
    ctype = response.headers.get("content-type", "")
    body = response.content
    if not body:
        return None
    if "json" in ctype or body[:64].lstrip()[:1] in (b"{", b"["):
        try:
            # numbers with a fraction become Decimal: money never passes through a float
            return json.loads(body, parse_float=Decimal)
        except ValueError:
            return None
    return None
