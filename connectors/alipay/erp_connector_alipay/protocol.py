# ruff: noqa: RUF001 -- Alipay's bill columns use full-width parentheses and colons
"""Alipay OpenAPI wire details shared by the connector and its sandbox.

Everything here is a pure function over text or bytes. The connector and the sandbox both use
these helpers for *encoding* (times, amounts, forms), but each signs and verifies on its own
side, and the tests check the signatures against an independent implementation (openssl), so
a shared mistake cannot cancel itself out unnoticed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, urlencode

__all__ = [
    "BILL_DETAIL_COLUMNS",
    "DEFAULT_GATEWAY",
    "SHANGHAI",
    "charset_codec",
    "decode_form",
    "encode_form",
    "form_charset",
    "format_amount",
    "format_time",
    "parse_amount",
    "parse_time",
    "response_key",
    "top_level_member",
]

DEFAULT_GATEWAY = "https://openapi.alipay.com/gateway.do"

#: Alipay's clock. A fixed offset rather than a tz database entry: China has kept UTC+8 without
#: daylight saving since 1991, and this way the connector needs no ``tzdata`` on Windows.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,3})?$")
_AMOUNT_RE = re.compile(r"^-?\d{1,12}(\.\d{1,2})?$")
_CENT = Decimal("0.01")

#: The columns of the ``…_业务明细.csv`` file of a trade bill, in order.
BILL_DETAIL_COLUMNS: tuple[str, ...] = (
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
)


# --- times and money ----------------------------------------------------------------------------


def format_time(when: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in Beijing time (naive datetimes are taken as Beijing time)."""
    if when.tzinfo is not None:
        when = when.astimezone(SHANGHAI)
    return when.strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """An aware datetime from Alipay's Beijing-time text (``gmt_refund`` carries milliseconds)."""
    text = text.strip()
    if not _TIME_RE.match(text):
        raise ValueError(f"not an Alipay time: {text!r}")
    fmt = _TIME_FORMAT + (".%f" if "." in text else "")
    return datetime.strptime(text, fmt).replace(tzinfo=SHANGHAI)


def format_amount(amount: Decimal) -> str:
    """Yuan with exactly two decimals; an amount with fractions of a cent is refused rather
    than rounded, since rounding money silently would charge or refund the wrong sum."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError("amount must be a finite Decimal")
    cents = amount.quantize(_CENT)
    if cents != amount:
        raise ValueError(f"amount {amount} has fractions of a cent")
    return f"{cents:.2f}"


def parse_amount(text: str) -> Decimal:
    """A Decimal from Alipay's amount text (never through float)."""
    text = text.strip()
    if not _AMOUNT_RE.match(text):
        raise ValueError(f"not an amount: {text!r}")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern already excludes it
        raise ValueError(f"not an amount: {text!r}") from None


# --- forms and charsets -------------------------------------------------------------------------


def charset_codec(charset: str) -> str:
    """The Python codec of an Alipay ``charset`` value (only what Alipay accepts)."""
    name = charset.strip().lower().replace("_", "-")
    if name in ("utf-8", "utf8"):
        return "utf-8"
    if name in ("gbk", "gb2312", "cp936"):
        # GB2312 text is GBK text; decoding declared GB2312 as GBK also accepts the
        # characters merchants put there anyway.
        return "gbk"
    if name == "gb18030":
        return "gb18030"
    raise ValueError(f"unsupported charset {charset!r}")


def form_charset(body: bytes, content_type: str | None = None, default: str = "utf-8") -> str:
    """The charset a form body declares: its own ``charset`` field (what Alipay signs with),
    else the Content-Type's, else ``default``. The field is ASCII, so it is found before the
    body can be decoded."""
    for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
        if name == "charset" and value:
            return value
    if content_type:
        match = re.search(r"charset\s*=\s*\"?([A-Za-z0-9_\-]+)", content_type, re.IGNORECASE)
        if match:
            return match.group(1)
    return default


def decode_form(body: bytes | str, charset: str) -> dict[str, str]:
    """Decode an ``application/x-www-form-urlencoded`` body whose bytes are in ``charset``.

    Strict: a malformed pair, bytes that are not valid in the charset or a name given twice
    raise ValueError, because a verifier must never guess which of two values was signed.
    """
    codec = charset_codec(charset)
    text = body.decode(codec) if isinstance(body, bytes) else body
    if not text:
        return {}
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=True, encoding=codec, errors="strict"
        )
    except UnicodeDecodeError as exc:
        raise ValueError(f"form value is not valid {codec}") from exc
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"form field {name!r} appears twice")
        out[name] = value
    return out


def encode_form(params: Mapping[str, str], charset: str = "utf-8") -> bytes:
    """A form body with every value percent-encoded in ``charset``."""
    return urlencode(list(params.items()), encoding=charset_codec(charset)).encode("ascii")


# --- responses ----------------------------------------------------------------------------------


def response_key(api: str) -> str:
    """``alipay.trade.query`` -> ``alipay_trade_query_response``."""
    return api.replace(".", "_") + "_response"


_WS = " \t\r\n"


def top_level_member(text: str, key: str) -> str | None:
    """The exact text of the value of ``key`` in the top-level JSON object ``text``.

    Alipay signs the response object's text as it sent it; re-serializing the parsed object
    (different spacing, escapes, key order) would sign something else. This walks the top
    level only, so the same name inside a nested value or a string cannot be mistaken for it.
    """
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "{":
        return None
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "}":
        return None
    while i < len(text) and text[i] == '"':
        name, i = decoder.raw_decode(text, i)
        i = _skip_ws(text, i)
        if i >= len(text) or text[i] != ":":
            return None
        start = _skip_ws(text, i + 1)
        _, end = decoder.raw_decode(text, start)
        if name == key:
            return text[start:end]
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        return None
    return None


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i
