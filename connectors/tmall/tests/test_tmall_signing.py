"""Request signing as the connector builds it, checked against TOP's documented example and
against the sandbox's independent verification."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from erp_connector_tmall.channel import TmallChannel
from erp_connector_tmall.protocol import SHANGHAI
from erp_connector_tmall.sandbox import TmallSandbox

from erp_core.channels.http import ChannelRequest
from erp_core.channels.interfaces import ChannelAuthError, ChannelContext, ChannelRejected

DOC_TIME = datetime(2013, 5, 6, 13, 52, 3, tzinfo=SHANGHAI)


def doc_channel(sign_method: str) -> TmallChannel:
    """The account of TOP's example: app_key, secret and session all ``test``."""
    context = ChannelContext(
        account_id=None,
        tenant_id=None,
        shop_id="1",
        app_key="test",
        config={"sign_method": sign_method},
        secrets={"app_secret": "test"},
        access_token="test",
    )
    return TmallChannel(context, limiter=False, now=lambda: DOC_TIME)


def test_documented_md5_example_reproduced_through_request_building() -> None:
    """TOP document "API调用方法详解" (PROTOCOLS.md §1): secret, app key and session ``test``."""
    channel = doc_channel("md5")
    params = channel.request_params("taobao.user.seller.get", {"fields": "nick"}, fmt="xml")
    assert params == {
        "app_key": "test",
        "fields": "nick",
        "format": "xml",
        "method": "taobao.user.seller.get",
        "session": "test",
        "sign_method": "md5",
        "timestamp": "2013-05-06 13:52:03",
        "v": "2.0",
        "sign": "72CB4D809B375A54502C09360D879C64",
    }


@pytest.mark.parametrize(
    ("sign_method", "digest"), [("hmac", hashlib.md5), ("hmac-sha256", hashlib.sha256)]
)
def test_hmac_requests_sign_the_canonical_string_without_wrapping(
    sign_method: str, digest: Callable[..., Any]
) -> None:
    # Written out by hand: the sign_method itself is part of what is signed.
    canonical = (
        "app_keytestfieldsnickformatxmlmethodtaobao.user.seller.getsessiontest"
        f"sign_method{sign_method}timestamp2013-05-06 13:52:03v2.0"
    )
    expected = hmac.new(b"test", canonical.encode(), digest).hexdigest().upper()
    params = doc_channel(sign_method).request_params(
        "taobao.user.seller.get", {"fields": "nick"}, fmt="xml"
    )
    assert params["sign"] == expected
    assert len(expected) == (32 if sign_method == "hmac" else 64)


def test_signing_hook_signs_every_attempt_with_a_fresh_timestamp() -> None:
    times = iter([DOC_TIME, DOC_TIME.replace(second=4)])
    channel = doc_channel("md5")
    channel._now = lambda: next(times)
    first = channel._sign(ChannelRequest("POST", "/", data={"method": "x.y", "tid": "1"}))
    second = channel._sign(ChannelRequest("POST", "/", data={"method": "x.y", "tid": "1"}))
    assert first.data is not None and second.data is not None
    assert first.data["timestamp"] != second.data["timestamp"]
    assert first.data["sign"] != second.data["sign"]
    assert first.data["tid"] == "1" and first.data["format"] == "json"


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
def test_sandbox_accepts_what_the_connector_signs_and_nothing_else(sign_method: str) -> None:
    box = TmallSandbox(seed=3)
    spec = box.account()
    context = ChannelContext(
        account_id=None,
        tenant_id=None,
        shop_id=spec.shop_id,
        app_key=spec.app_key,
        config={"sign_method": sign_method},
        secrets=spec.secrets,
        access_token=spec.access_token,
    )
    channel = TmallChannel(context, limiter=False)
    # Chinese text is signed as raw UTF-8, not URL-encoded.
    params = channel.request_params(
        "taobao.skus.custom.get", {"outer_id": "TS-COT-WHT-M", "fields": "sku_id,备注"}
    )
    status, body = box.handle(params)
    assert status == 200 and "skus_custom_get_response" in body
    tampered = {**params, "outer_id": "TS-COT-WHT-L"}
    assert box.handle(tampered)[1]["error_response"]["code"] == 25
    assert box.errors() == ["25"]


def test_a_misconfigured_sign_method_is_refused_before_any_request() -> None:
    channel = doc_channel("sha1")
    with pytest.raises(ChannelRejected) as info:
        channel.get_order("1")
    assert info.value.code == "config"


def test_no_request_without_secret_or_session() -> None:
    context = ChannelContext(account_id=None, tenant_id=None, shop_id="1", app_key="k")
    channel = TmallChannel(context, limiter=False)
    with pytest.raises(ChannelAuthError):
        channel.request_params("taobao.trade.fullinfo.get", {"tid": "1"})
    with_secret = TmallChannel(
        ChannelContext(
            account_id=None, tenant_id=None, shop_id="1", app_key="k", secrets={"app_secret": "s"}
        ),
        limiter=False,
    )
    with pytest.raises(ChannelAuthError, match="access token"):
        with_secret.request_params("taobao.trade.fullinfo.get", {"tid": "1"})
    # The token refresh is the one call TOP serves without a session.
    assert "session" not in with_secret.request_params(
        "taobao.top.auth.token.refresh", {"refresh_token": "r"}
    )
