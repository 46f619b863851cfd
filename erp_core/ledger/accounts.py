"""The default chart of accounts (小企业会计准则) and the default account mapping.

Codes follow the Chinese Small Business Accounting Standards (2011): four digits for a
first-level account, two more digits per sub-account level (``2202`` -> ``220202``). An account
that has sub-accounts is an aggregate: postings go to its sub-accounts (末级科目).
"""

from __future__ import annotations

from dataclasses import dataclass

from erp_core.ledger.types import AccountType


@dataclass(frozen=True, slots=True)
class ChartAccount:
    code: str
    name_zh: str
    name_en: str
    type: AccountType


def _a(code: str, zh: str, en: str, type_: AccountType) -> ChartAccount:
    return ChartAccount(code, zh, en, type_)


#: Every tenant starts with these accounts (parents before their sub-accounts).
DEFAULT_CHART: tuple[ChartAccount, ...] = (
    # 资产类 assets
    _a("1001", "库存现金", "Cash on hand", "asset"),
    _a("1002", "银行存款", "Bank deposits", "asset"),
    _a("1012", "其他货币资金", "Other monetary funds (platform and payment wallets)", "asset"),
    _a("1121", "应收票据", "Notes receivable", "asset"),
    _a("1122", "应收账款", "Accounts receivable", "asset"),
    _a("1123", "预付账款", "Prepayments", "asset"),
    _a("1221", "其他应收款", "Other receivables", "asset"),
    _a("1402", "在途物资", "Goods in transit", "asset"),
    _a("1403", "原材料", "Raw materials", "asset"),
    _a("1405", "库存商品", "Merchandise inventory", "asset"),
    _a("1411", "周转材料", "Packaging and low-value consumables", "asset"),
    _a("1601", "固定资产", "Fixed assets", "asset"),
    _a("1602", "累计折旧", "Accumulated depreciation", "asset"),
    _a("1901", "待处理财产损溢", "Assets pending disposal (gains and losses)", "asset"),
    _a("190101", "待处理流动资产损溢", "Current assets pending disposal", "asset"),
    _a("190102", "待处理非流动资产损溢", "Non-current assets pending disposal", "asset"),
    # 负债类 liabilities
    _a("2001", "短期借款", "Short-term borrowings", "liability"),
    _a("2201", "应付票据", "Notes payable", "liability"),
    _a("2202", "应付账款", "Accounts payable", "liability"),
    _a("220201", "应付货款", "Trade payables", "liability"),
    _a("220202", "暂估应付账款", "Goods received not invoiced (GR/IR)", "liability"),
    _a("2203", "预收账款", "Advances from customers", "liability"),
    _a("2211", "应付职工薪酬", "Employee benefits payable", "liability"),
    _a("2221", "应交税费", "Taxes payable", "liability"),
    _a("2241", "其他应付款", "Other payables", "liability"),
    # 所有者权益类 equity
    _a("3001", "实收资本", "Paid-in capital", "equity"),
    _a("3002", "资本公积", "Capital reserve", "equity"),
    _a("3101", "盈余公积", "Surplus reserve", "equity"),
    _a("3103", "本年利润", "Profit for the year", "equity"),
    _a("3104", "利润分配", "Profit distribution", "equity"),
    # 损益类 income
    _a("5001", "主营业务收入", "Revenue from main operations", "income"),
    _a("5051", "其他业务收入", "Other operating revenue", "income"),
    _a("5111", "投资收益", "Investment income", "income"),
    _a("5301", "营业外收入", "Non-operating income", "income"),
    # 损益类 expenses
    _a("5401", "主营业务成本", "Cost of goods sold", "expense"),
    _a("5402", "其他业务成本", "Other operating costs", "expense"),
    _a("5403", "税金及附加", "Taxes and surcharges", "expense"),
    _a("5601", "销售费用", "Selling expenses", "expense"),
    _a("560101", "平台佣金及服务费", "Platform commissions and service fees", "expense"),
    _a("560102", "推广费", "Advertising and promotion", "expense"),
    _a("560103", "运杂费", "Shipping and delivery", "expense"),
    _a("560199", "其他销售费用", "Other selling expenses", "expense"),
    _a("5602", "管理费用", "Administrative expenses", "expense"),
    _a("5603", "财务费用", "Finance costs", "expense"),
    _a("5711", "营业外支出", "Non-operating expenses", "expense"),
    _a("5801", "所得税费用", "Income tax expense", "expense"),
)


@dataclass(frozen=True, slots=True)
class Purpose:
    name: str
    default: str
    description: str


#: Account mapping: what a posting is for -> the account it goes to, per tenant.
PURPOSES: tuple[Purpose, ...] = (
    Purpose("inventory", "1405", "stock on hand (receipts in, deliveries out)"),
    Purpose("grir", "220202", "goods received not invoiced: credited on receipt"),
    Purpose("cogs", "5401", "cost of goods delivered to customers"),
    Purpose("stock_gain", "190101", "count surplus, pending approval"),
    Purpose("stock_loss", "190101", "count shortage, pending approval"),
    Purpose("scrap", "5711", "goods written off (damaged, expired)"),
    Purpose("receivable", "1122", "amounts customers and platforms owe"),
    Purpose("revenue", "5001", "sales of goods, net of merchant-funded discounts"),
    Purpose("sales_discount", "5001", "merchant-funded discounts (debited to revenue)"),
    Purpose("platform_fee", "560101", "platform commissions and service fees"),
    Purpose("payable", "220201", "amounts owed to suppliers once invoiced"),
    Purpose("tax_payable", "2221", "output VAT and other taxes payable"),
    Purpose("bank", "1002", "bank accounts"),
    Purpose("wallet", "1012", "platform and payment wallets (Alipay, WeChat Pay)"),
)
PURPOSE_NAMES = frozenset(p.name for p in PURPOSES)

#: Which purposes a stock valuation debits and credits, by kind.
VALUATION_ACCOUNTS: dict[str, tuple[str, str]] = {
    "receipt": ("inventory", "grir"),
    "delivery": ("cogs", "inventory"),
    "adjustment_gain": ("inventory", "stock_gain"),
    "adjustment_loss": ("stock_loss", "inventory"),
    "scrap": ("scrap", "inventory"),
    "customer_return": ("inventory", "cogs"),
    "supplier_return": ("grir", "inventory"),
}

#: Beancount root account of each type.
BEANCOUNT_ROOTS: dict[str, str] = {
    "asset": "Assets",
    "liability": "Liabilities",
    "equity": "Equity",
    "income": "Income",
    "expense": "Expenses",
}

#: Decimal places of a currency's minor unit; other three-letter codes have 2.
MINOR_UNITS: dict[str, int] = {
    "CNY": 2,
    "USD": 2,
    "EUR": 2,
    "HKD": 2,
    "GBP": 2,
    "TWD": 2,
    "SGD": 2,
    "JPY": 0,
    "KRW": 0,
}


def minor_unit(currency: str) -> int:
    return MINOR_UNITS.get(currency, 2)
