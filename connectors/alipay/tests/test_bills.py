"""Trade bills: the download URL query, the GBK ZIP, and parsing it into BillRows."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from erp_connector_alipay import sandbox as sandbox_module
from erp_connector_alipay.channel import AlipayChannel
from erp_connector_alipay.protocol import SHANGHAI
from erp_connector_alipay.sandbox import AlipaySandbox

from erp_core.channels import BillKind, ChannelError, ChannelRejected, PaymentRequest, RefundRequest

YESTERDAY = (datetime.now(SHANGHAI) - timedelta(days=1)).replace(
    hour=0, minute=0, second=0, microsecond=0
)


def _pay(
    sandbox: AlipaySandbox, channel: AlipayChannel, no: str, amount: str, at: datetime
) -> None:
    channel.create_payment(
        PaymentRequest(
            out_trade_no=no, amount=Decimal(amount), subject=f"账单商品 {no}", method="precreate"
        )
    )
    sandbox.pay(no, at=at)


@pytest.fixture
def day_of_trades(sandbox: AlipaySandbox, channel: AlipayChannel) -> date:
    """Yesterday: two payments, a partial and a full refund; today: one more payment."""
    sandbox.clock = lambda: YESTERDAY + timedelta(hours=9)
    _pay(sandbox, channel, "B-1", "100.00", YESTERDAY + timedelta(hours=10))
    _pay(sandbox, channel, "B-2", "35.50", YESTERDAY + timedelta(hours=11))
    sandbox.clock = lambda: YESTERDAY + timedelta(hours=15)
    channel.refund(RefundRequest(out_trade_no="B-1", out_request_no="RF-1", amount=Decimal(30)))
    channel.refund(
        RefundRequest(out_trade_no="B-2", out_request_no="RF-2", amount=Decimal("35.50"))
    )
    sandbox.clock = lambda: datetime.now(SHANGHAI)
    _pay(sandbox, channel, "B-3", "1.00", datetime.now(SHANGHAI))
    return YESTERDAY.date()


def test_the_bill_is_a_gbk_zip_like_alipays(
    sandbox: AlipaySandbox, channel: AlipayChannel, day_of_trades: date
) -> None:
    data = channel.download_bill(YESTERDAY + timedelta(hours=12))
    sent = sandbox.calls[-2]
    assert sent.api == "alipay.data.dataservice.bill.downloadurl.query"
    assert '"bill_type":"trade"' in sent.params["biz_content"]
    assert f'"bill_date":"{day_of_trades.isoformat()}"' in sent.params["biz_content"]
    archive = zipfile.ZipFile(io.BytesIO(data))
    infos = archive.infolist()
    assert len(infos) == 2
    assert all(not info.flag_bits & 0x800 for info in infos)  # names are GBK, not UTF-8
    names = [info.filename.encode("cp437").decode("gbk") for info in infos]
    detail = next(n for n in names if n.endswith("_业务明细.csv"))
    assert any(n.endswith("_业务明细(汇总).csv") for n in names)
    text = archive.read(infos[names.index(detail)]).decode("gbk")
    lines = text.splitlines()
    assert lines[0] == "#支付宝业务明细查询" and lines[1].startswith("#账号：[2088")
    assert lines[4].startswith("支付宝交易号,商户订单号,业务类型,")
    assert lines[-1].startswith("#导出时间")
    assert sum(1 for line in lines if not line.startswith("#")) == 1 + 4


def test_parse_bill_gives_payments_and_refunds(channel: AlipayChannel, day_of_trades: date) -> None:
    rows = channel.parse_bill(channel.download_bill(YESTERDAY))
    by = {(r.out_trade_no, r.kind): r for r in rows}
    assert set(by) == {
        ("B-1", BillKind.PAYMENT),
        ("B-2", BillKind.PAYMENT),
        ("B-1", BillKind.REFUND),
        ("B-2", BillKind.REFUND),
    }
    pay = by["B-1", BillKind.PAYMENT]
    assert pay.amount == Decimal("100.00") and pay.fee == Decimal("0.60")
    assert pay.happened_at == YESTERDAY + timedelta(hours=10)
    assert pay.trade_no.startswith(f"{YESTERDAY:%Y%m%d}") and "\t" not in pay.trade_no
    refund = by["B-1", BillKind.REFUND]
    assert refund.amount == Decimal("30.00") and refund.out_request_no == "RF-1"
    assert refund.fee == Decimal("-0.18")  # Alipay gives part of its fee back
    assert refund.happened_at == YESTERDAY + timedelta(hours=15)
    assert refund.raw["订单金额（元）"] == "-30.00" and refund.raw["退款批次号/请求号"] == "RF-1\t"
    assert all(isinstance(r.amount, Decimal) and r.amount > 0 for r in rows)


def test_a_day_without_trades_and_a_day_to_come(
    channel: AlipayChannel, day_of_trades: date
) -> None:
    assert channel.parse_bill(channel.download_bill(YESTERDAY - timedelta(days=3))) == []
    with pytest.raises(ChannelRejected) as info:
        channel.download_bill(datetime.now(SHANGHAI) + timedelta(days=2))
    assert info.value.code == "isp.bill_not_exist"


def test_an_expired_download_url_is_refused(channel: AlipayChannel, monkeypatch: Any) -> None:
    monkeypatch.setattr(sandbox_module, "_BILL_URL_TTL", -1.0)
    with pytest.raises(ChannelRejected):
        channel.download_bill(YESTERDAY)


# An Alipay-style bill written by hand (not by the sandbox): UTF-8-flagged names, an empty
# business type row and a trailing column left out.
_HAND_MADE = (
    "#支付宝业务明细查询\n"
    "#账号：[20880000000000010156]\n"
    "#起始日期：[2026年11月01日 00:00:00]   终止日期：[2026年11月02日 00:00:00]\n"
    "#-----------------------------------------业务明细列表----------------------------------------\n"
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,"
    "对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,"
    "券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注\n"
    '2026110122001400000000000009\t,M-9\t,交易\t,"礼盒, 大号",'
    "2026-11-01 08:00:00,2026-11-01 08:00:07,,,,,"
    "*三(z***@x.com)\t,12.00,12.00,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,\t,-0.07,0.00,\n"
    '2026110122001400000000000009\t,M-9\t,退款\t,"礼盒, 大号",'
    "2026-11-01 08:00:00,2026-11-01 09:30:00,,,,,"
    "*三(z***@x.com)\t,-2.00,-2.00,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,REQ-9\t,0.01,0.00\n"
    "#-----------------------------------------业务明细列表结束------------------------------------\n"
    "#交易合计：1笔，商家实收共12.00元，商家优惠共0.00元\n"
    "#退款合计：1笔，商家实收退款共-2.00元，商家优惠退款共0.00元\n"
    "#导出时间：[2026年11月02日 09:12:00]\n"
)


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text.encode("gbk"))
    return buffer.getvalue()


def test_parse_a_hand_made_bill(channel: AlipayChannel) -> None:
    data = _zip(
        {
            "20880000000000010156_20261101_业务明细(汇总).csv": (
                "#支付宝业务汇总查询\n门店编号,门店名称\n合计,\n"
            ),
            "20880000000000010156_20261101_业务明细.csv": _HAND_MADE,
        }
    )
    pay, refund = channel.parse_bill(data)
    assert (pay.kind, pay.trade_no, pay.out_trade_no) == (
        BillKind.PAYMENT,
        "2026110122001400000000000009",
        "M-9",
    )
    assert pay.amount == Decimal("12.00") and pay.fee == Decimal("0.07")
    assert pay.raw["商品名称"] == "礼盒, 大号"
    assert (refund.kind, refund.amount, refund.fee, refund.out_request_no) == (
        BillKind.REFUND,
        Decimal("2.00"),
        Decimal("-0.01"),
        "REQ-9",
    )
    assert refund.happened_at == datetime(2026, 11, 1, 9, 30, tzinfo=SHANGHAI)


def test_unreadable_bills(channel: AlipayChannel) -> None:
    with pytest.raises(ChannelError):
        channel.parse_bill(b"PK not really a zip")
    with pytest.raises(ChannelError):
        channel.parse_bill(_zip({"summary.csv": "#汇总\n门店编号,门店名称\n"}))
    broken = _HAND_MADE.replace("12.00,12.00", "twelve,12.00")
    with pytest.raises(ChannelError):
        channel.parse_bill(_zip({"x_业务明细.csv": broken}))
