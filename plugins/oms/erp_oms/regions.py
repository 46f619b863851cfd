"""China's administrative regions, as data for checking the addresses orders arrive with.

Why a table of our own: the automatic review holds an order whose address a courier cannot
deliver to, and that needs to know which provinces exist, which prefecture-level city belongs to
which province, and what the municipalities and special cases look like. Platforms agree on the
province level but not below it (Taobao writes 北京市 / 北京市 / 朝阳区, JD writes 北京 / 朝阳区 /
三环到四环之间, the national code table writes 北京市 / 市辖区 / 朝阳区), so the checks here are
deliberately forgiving: only what is certainly wrong is an *error* (the order is held); what is
merely not in the table is a *warning* (shown, never held), because the table lags behind
renamings and mergers and a stale table must not stop a merchant's shipping.

The data are the provincial level (34 units), every prefecture-level division (333: cities,
prefectures 地区, autonomous prefectures 自治州 and leagues 盟) with its province, the
county-level units governed directly by a province (仙桃市, 琼海市, the XPCC cities of Xinjiang...)
which platforms list at the city level, and the districts and counties of the four
municipalities. Names are the official full names; :func:`normalize_province` and
:func:`normalize_city` also accept the short forms people type.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

# --- Provincial level ---------------------------------------------------------------------

#: The four municipalities directly under the central government.
MUNICIPALITIES: tuple[str, ...] = ("北京市", "天津市", "上海市", "重庆市")

#: The two special administrative regions.
SPECIAL_ADMINISTRATIVE_REGIONS: tuple[str, ...] = ("香港特别行政区", "澳门特别行政区")

#: The five autonomous regions, with the short form people write.
AUTONOMOUS_REGIONS: Mapping[str, str] = {
    "内蒙古自治区": "内蒙古",
    "广西壮族自治区": "广西",
    "西藏自治区": "西藏",
    "宁夏回族自治区": "宁夏",
    "新疆维吾尔自治区": "新疆",
}

#: Prefecture-level divisions of each province and autonomous region, in the order of the
#: national code table. The municipalities and the SARs have none; 台湾省 has none in the
#: mainland statistics either, so its cities are simply not checked.
PREFECTURES: Mapping[str, tuple[str, ...]] = {
    "北京市": (),
    "天津市": (),
    "河北省": (
        "石家庄市",
        "唐山市",
        "秦皇岛市",
        "邯郸市",
        "邢台市",
        "保定市",
        "张家口市",
        "承德市",
        "沧州市",
        "廊坊市",
        "衡水市",
    ),
    "山西省": (
        "太原市",
        "大同市",
        "阳泉市",
        "长治市",
        "晋城市",
        "朔州市",
        "晋中市",
        "运城市",
        "忻州市",
        "临汾市",
        "吕梁市",
    ),
    "内蒙古自治区": (
        "呼和浩特市",
        "包头市",
        "乌海市",
        "赤峰市",
        "通辽市",
        "鄂尔多斯市",
        "呼伦贝尔市",
        "巴彦淖尔市",
        "乌兰察布市",
        "兴安盟",
        "锡林郭勒盟",
        "阿拉善盟",
    ),
    "辽宁省": (
        "沈阳市",
        "大连市",
        "鞍山市",
        "抚顺市",
        "本溪市",
        "丹东市",
        "锦州市",
        "营口市",
        "阜新市",
        "辽阳市",
        "盘锦市",
        "铁岭市",
        "朝阳市",
        "葫芦岛市",
    ),
    "吉林省": (
        "长春市",
        "吉林市",
        "四平市",
        "辽源市",
        "通化市",
        "白山市",
        "松原市",
        "白城市",
        "延边朝鲜族自治州",
    ),
    "黑龙江省": (
        "哈尔滨市",
        "齐齐哈尔市",
        "鸡西市",
        "鹤岗市",
        "双鸭山市",
        "大庆市",
        "伊春市",
        "佳木斯市",
        "七台河市",
        "牡丹江市",
        "黑河市",
        "绥化市",
        "大兴安岭地区",
    ),
    "上海市": (),
    "江苏省": (
        "南京市",
        "无锡市",
        "徐州市",
        "常州市",
        "苏州市",
        "南通市",
        "连云港市",
        "淮安市",
        "盐城市",
        "扬州市",
        "镇江市",
        "泰州市",
        "宿迁市",
    ),
    "浙江省": (
        "杭州市",
        "宁波市",
        "温州市",
        "嘉兴市",
        "湖州市",
        "绍兴市",
        "金华市",
        "衢州市",
        "舟山市",
        "台州市",
        "丽水市",
    ),
    "安徽省": (
        "合肥市",
        "芜湖市",
        "蚌埠市",
        "淮南市",
        "马鞍山市",
        "淮北市",
        "铜陵市",
        "安庆市",
        "黄山市",
        "滁州市",
        "阜阳市",
        "宿州市",
        "六安市",
        "亳州市",
        "池州市",
        "宣城市",
    ),
    "福建省": (
        "福州市",
        "厦门市",
        "莆田市",
        "三明市",
        "泉州市",
        "漳州市",
        "南平市",
        "龙岩市",
        "宁德市",
    ),
    "江西省": (
        "南昌市",
        "景德镇市",
        "萍乡市",
        "九江市",
        "新余市",
        "鹰潭市",
        "赣州市",
        "吉安市",
        "宜春市",
        "抚州市",
        "上饶市",
    ),
    "山东省": (
        "济南市",
        "青岛市",
        "淄博市",
        "枣庄市",
        "东营市",
        "烟台市",
        "潍坊市",
        "济宁市",
        "泰安市",
        "威海市",
        "日照市",
        "临沂市",
        "德州市",
        "聊城市",
        "滨州市",
        "菏泽市",
    ),
    "河南省": (
        "郑州市",
        "开封市",
        "洛阳市",
        "平顶山市",
        "安阳市",
        "鹤壁市",
        "新乡市",
        "焦作市",
        "濮阳市",
        "许昌市",
        "漯河市",
        "三门峡市",
        "南阳市",
        "商丘市",
        "信阳市",
        "周口市",
        "驻马店市",
    ),
    "湖北省": (
        "武汉市",
        "黄石市",
        "十堰市",
        "宜昌市",
        "襄阳市",
        "鄂州市",
        "荆门市",
        "孝感市",
        "荆州市",
        "黄冈市",
        "咸宁市",
        "随州市",
        "恩施土家族苗族自治州",
    ),
    "湖南省": (
        "长沙市",
        "株洲市",
        "湘潭市",
        "衡阳市",
        "邵阳市",
        "岳阳市",
        "常德市",
        "张家界市",
        "益阳市",
        "郴州市",
        "永州市",
        "怀化市",
        "娄底市",
        "湘西土家族苗族自治州",
    ),
    "广东省": (
        "广州市",
        "韶关市",
        "深圳市",
        "珠海市",
        "汕头市",
        "佛山市",
        "江门市",
        "湛江市",
        "茂名市",
        "肇庆市",
        "惠州市",
        "梅州市",
        "汕尾市",
        "河源市",
        "阳江市",
        "清远市",
        "东莞市",
        "中山市",
        "潮州市",
        "揭阳市",
        "云浮市",
    ),
    "广西壮族自治区": (
        "南宁市",
        "柳州市",
        "桂林市",
        "梧州市",
        "北海市",
        "防城港市",
        "钦州市",
        "贵港市",
        "玉林市",
        "百色市",
        "贺州市",
        "河池市",
        "来宾市",
        "崇左市",
    ),
    "海南省": ("海口市", "三亚市", "三沙市", "儋州市"),
    "重庆市": (),
    "四川省": (
        "成都市",
        "自贡市",
        "攀枝花市",
        "泸州市",
        "德阳市",
        "绵阳市",
        "广元市",
        "遂宁市",
        "内江市",
        "乐山市",
        "南充市",
        "眉山市",
        "宜宾市",
        "广安市",
        "达州市",
        "雅安市",
        "巴中市",
        "资阳市",
        "阿坝藏族羌族自治州",
        "甘孜藏族自治州",
        "凉山彝族自治州",
    ),
    "贵州省": (
        "贵阳市",
        "六盘水市",
        "遵义市",
        "安顺市",
        "毕节市",
        "铜仁市",
        "黔西南布依族苗族自治州",
        "黔东南苗族侗族自治州",
        "黔南布依族苗族自治州",
    ),
    "云南省": (
        "昆明市",
        "曲靖市",
        "玉溪市",
        "保山市",
        "昭通市",
        "丽江市",
        "普洱市",
        "临沧市",
        "楚雄彝族自治州",
        "红河哈尼族彝族自治州",
        "文山壮族苗族自治州",
        "西双版纳傣族自治州",
        "大理白族自治州",
        "德宏傣族景颇族自治州",
        "怒江傈僳族自治州",
        "迪庆藏族自治州",
    ),
    "西藏自治区": (
        "拉萨市",
        "日喀则市",
        "昌都市",
        "林芝市",
        "山南市",
        "那曲市",
        "阿里地区",
    ),
    "陕西省": (
        "西安市",
        "铜川市",
        "宝鸡市",
        "咸阳市",
        "渭南市",
        "延安市",
        "汉中市",
        "榆林市",
        "安康市",
        "商洛市",
    ),
    "甘肃省": (
        "兰州市",
        "嘉峪关市",
        "金昌市",
        "白银市",
        "天水市",
        "武威市",
        "张掖市",
        "平凉市",
        "酒泉市",
        "庆阳市",
        "定西市",
        "陇南市",
        "临夏回族自治州",
        "甘南藏族自治州",
    ),
    "青海省": (
        "西宁市",
        "海东市",
        "海北藏族自治州",
        "黄南藏族自治州",
        "海南藏族自治州",
        "果洛藏族自治州",
        "玉树藏族自治州",
        "海西蒙古族藏族自治州",
    ),
    "宁夏回族自治区": ("银川市", "石嘴山市", "吴忠市", "固原市", "中卫市"),
    "新疆维吾尔自治区": (
        "乌鲁木齐市",
        "克拉玛依市",
        "吐鲁番市",
        "哈密市",
        "昌吉回族自治州",
        "博尔塔拉蒙古自治州",
        "巴音郭楞蒙古自治州",
        "阿克苏地区",
        "克孜勒苏柯尔克孜自治州",
        "喀什地区",
        "和田地区",
        "伊犁哈萨克自治州",
        "塔城地区",
        "阿勒泰地区",
    ),
    "台湾省": (),
    "香港特别行政区": (),
    "澳门特别行政区": (),
}

#: All 34 provincial-level divisions by their official full names.
PROVINCES: tuple[str, ...] = tuple(PREFECTURES)

#: County-level units governed directly by their province (省直辖县级行政单位). Platforms list
#: them at the city level (湖北省 / 仙桃市 / 郑场镇), so they are accepted as cities.
DIRECT_COUNTY_LEVEL: Mapping[str, tuple[str, ...]] = {
    "河南省": ("济源市",),
    "湖北省": ("仙桃市", "潜江市", "天门市", "神农架林区"),
    "海南省": (
        "五指山市",
        "琼海市",
        "文昌市",
        "万宁市",
        "东方市",
        "定安县",
        "屯昌县",
        "澄迈县",
        "临高县",
        "白沙黎族自治县",
        "昌江黎族自治县",
        "乐东黎族自治县",
        "陵水黎族自治县",
        "保亭黎族苗族自治县",
        "琼中黎族苗族自治县",
    ),
    "新疆维吾尔自治区": (
        "石河子市",
        "阿拉尔市",
        "图木舒克市",
        "五家渠市",
        "北屯市",
        "铁门关市",
        "双河市",
        "可克达拉市",
        "昆玉市",
        "胡杨河市",
        "新星市",
        "白杨市",
    ),
}

#: What the national code table and some platforms write at the city level when the next level
#: down is one of :data:`DIRECT_COUNTY_LEVEL` (海南省 / 省直辖县级行政区划 / 琼海市).
DIRECT_COUNTY_PLACEHOLDERS: frozenset[str] = frozenset(
    {"省直辖县级行政区划", "省直辖县级行政单位", "自治区直辖县级行政区划", "自治区直辖县级行政单位"}
)

#: Prefecture-level cities with no district level: the next level down is a town or a street.
CITIES_WITHOUT_DISTRICTS: frozenset[str] = frozenset({"东莞市", "中山市", "嘉峪关市", "儋州市"})

#: Districts and counties of the municipalities (JD puts them at the city level).
MUNICIPAL_DISTRICTS: Mapping[str, tuple[str, ...]] = {
    "北京市": (
        "东城区",
        "西城区",
        "朝阳区",
        "丰台区",
        "石景山区",
        "海淀区",
        "门头沟区",
        "房山区",
        "通州区",
        "顺义区",
        "昌平区",
        "大兴区",
        "怀柔区",
        "平谷区",
        "密云区",
        "延庆区",
    ),
    "天津市": (
        "和平区",
        "河东区",
        "河西区",
        "南开区",
        "河北区",
        "红桥区",
        "东丽区",
        "西青区",
        "津南区",
        "北辰区",
        "武清区",
        "宝坻区",
        "滨海新区",
        "宁河区",
        "静海区",
        "蓟州区",
    ),
    "上海市": (
        "黄浦区",
        "徐汇区",
        "长宁区",
        "静安区",
        "普陀区",
        "虹口区",
        "杨浦区",
        "闵行区",
        "宝山区",
        "嘉定区",
        "浦东新区",
        "金山区",
        "松江区",
        "青浦区",
        "奉贤区",
        "崇明区",
    ),
    "重庆市": (
        "万州区",
        "涪陵区",
        "渝中区",
        "大渡口区",
        "江北区",
        "沙坪坝区",
        "九龙坡区",
        "南岸区",
        "北碚区",
        "綦江区",
        "大足区",
        "渝北区",
        "巴南区",
        "黔江区",
        "长寿区",
        "江津区",
        "合川区",
        "永川区",
        "南川区",
        "璧山区",
        "铜梁区",
        "潼南区",
        "荣昌区",
        "开州区",
        "梁平区",
        "武隆区",
        "城口县",
        "丰都县",
        "垫江县",
        "忠县",
        "云阳县",
        "奉节县",
        "巫山县",
        "巫溪县",
        "石柱土家族自治县",
        "秀山土家族苗族自治县",
        "酉阳土家族苗族自治县",
        "彭水苗族土家族自治县",
    ),
}

#: What stands at the city level of a municipality besides its own name (national code table:
#: 市辖区 for the districts, 县 for Chongqing's counties; older platform tables: 城区, 郊县).
MUNICIPAL_CITY_PLACEHOLDERS: frozenset[str] = frozenset({"市辖区", "县", "城区", "郊县"})

#: Short names of the autonomous prefectures, as people write them (恩施, and 恩施州 derived).
#: 海南藏族自治州 has only 海南州 (see :data:`_EXTRA_CITY_ALIASES`): a bare 海南 is the province.
_PREFECTURE_SHORT: Mapping[str, str] = {
    "延边朝鲜族自治州": "延边",
    "恩施土家族苗族自治州": "恩施",
    "湘西土家族苗族自治州": "湘西",
    "阿坝藏族羌族自治州": "阿坝",
    "甘孜藏族自治州": "甘孜",
    "凉山彝族自治州": "凉山",
    "黔西南布依族苗族自治州": "黔西南",
    "黔东南苗族侗族自治州": "黔东南",
    "黔南布依族苗族自治州": "黔南",
    "楚雄彝族自治州": "楚雄",
    "红河哈尼族彝族自治州": "红河",
    "文山壮族苗族自治州": "文山",
    "西双版纳傣族自治州": "西双版纳",
    "大理白族自治州": "大理",
    "德宏傣族景颇族自治州": "德宏",
    "怒江傈僳族自治州": "怒江",
    "迪庆藏族自治州": "迪庆",
    "临夏回族自治州": "临夏",
    "甘南藏族自治州": "甘南",
    "海北藏族自治州": "海北",
    "黄南藏族自治州": "黄南",
    "果洛藏族自治州": "果洛",
    "玉树藏族自治州": "玉树",
    "海西蒙古族藏族自治州": "海西",
    "昌吉回族自治州": "昌吉",
    "博尔塔拉蒙古自治州": "博尔塔拉",
    "巴音郭楞蒙古自治州": "巴音郭楞",
    "克孜勒苏柯尔克孜自治州": "克孜勒苏",
    "伊犁哈萨克自治州": "伊犁",
}

_EXTRA_CITY_ALIASES: Mapping[str, str] = {"海南州": "海南藏族自治州"}

#: Names that were renamed or merged, still found in old platform address tables and in
#: addresses buyers saved years ago: old name -> the prefecture that covers it today.
LEGACY_CITIES: Mapping[str, str] = {
    "襄樊市": "襄阳市",
    "思茅市": "普洱市",
    "莱芜市": "济南市",
    "毕节地区": "毕节市",
    "铜仁地区": "铜仁市",
    "日喀则地区": "日喀则市",
    "昌都地区": "昌都市",
    "林芝地区": "林芝市",
    "山南地区": "山南市",
    "那曲地区": "那曲市",
    "吐鲁番地区": "吐鲁番市",
    "哈密地区": "哈密市",
    "海东地区": "海东市",
}


# --- Look-ups -------------------------------------------------------------------------------


def clean(text: str | None) -> str:
    """NFKC (full-width letters and digits to half-width) without any whitespace: platforms and
    buyers pad names with spaces, including the ideographic one."""
    if not text:
        return ""
    return "".join(unicodedata.normalize("NFKC", text).split())


def _province_aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    for name in PROVINCES:
        aliases[name] = name
        if name in AUTONOMOUS_REGIONS:
            short = AUTONOMOUS_REGIONS[name]
            aliases[short] = name
            aliases[short + "省"] = name  # "广西省": a common mistake, unambiguous
        elif name in SPECIAL_ADMINISTRATIVE_REGIONS:
            short = name.removesuffix("特别行政区")
            aliases[short] = name
            aliases[short + "特区"] = name
            aliases["中国" + short] = name
        else:  # ...省 or ...市
            short = name[:-1]
            aliases[short] = name
    aliases["内蒙"] = "内蒙古自治区"
    aliases["中国台湾"] = "台湾省"
    return aliases


_PROVINCE_ALIASES: dict[str, str] = _province_aliases()


def normalize_province(text: str | None) -> str | None:
    """The official full name of a province-level division written in full or short form
    ("浙江" -> "浙江省", "广西" -> "广西壮族自治区", "上海" -> "上海市"), or ``None`` when it is
    not one. A leading 中国 is ignored (cross-border platforms prefix it)."""
    name = clean(text)
    if not name:
        return None
    found = _PROVINCE_ALIASES.get(name)
    if found is None and name.startswith("中国"):
        found = _PROVINCE_ALIASES.get(name.removeprefix("中国"))
    return found


def _city_table() -> tuple[dict[str, str], dict[str, str]]:
    """(official name -> province, alias -> official name). An alias two names would share is
    dropped rather than guessed."""
    province_of: dict[str, str] = {}
    for province, cities in PREFECTURES.items():
        for city in cities:
            province_of[city] = province
    for province, units in DIRECT_COUNTY_LEVEL.items():
        for unit in units:
            province_of[unit] = province
    for municipality in MUNICIPALITIES:
        province_of[municipality] = municipality

    candidates: dict[str, set[str]] = {}

    def offer(alias: str, name: str) -> None:
        if alias and alias not in province_of:
            candidates.setdefault(alias, set()).add(name)

    for name in province_of:
        if name in _PREFECTURE_SHORT:
            offer(_PREFECTURE_SHORT[name], name)
            offer(_PREFECTURE_SHORT[name] + "州", name)
        for suffix in ("市", "地区", "盟"):
            if name.endswith(suffix) and len(name) > len(suffix) + 1:
                offer(name.removesuffix(suffix), name)
    for alias, name in (*LEGACY_CITIES.items(), *_EXTRA_CITY_ALIASES.items()):
        offer(alias, name)
        for suffix in ("市", "地区"):
            if alias.endswith(suffix) and len(alias) > len(suffix) + 1:
                offer(alias.removesuffix(suffix), name)
    aliases = {alias: next(iter(names)) for alias, names in candidates.items() if len(names) == 1}
    return province_of, aliases


_CITY_PROVINCE, _CITY_ALIASES = _city_table()

#: Every city-level name known to the table (prefectures, directly governed county-level units,
#: the municipalities themselves) -> its province.
CITY_PROVINCE: Mapping[str, str] = _CITY_PROVINCE


def normalize_city(text: str | None) -> str | None:
    """The official name of a city-level division written in full, short or outdated form
    ("杭州" -> "杭州市", "恩施州" -> "恩施土家族苗族自治州", "襄樊市" -> "襄阳市"), or ``None``
    when the table does not know it. Municipality placeholders (市辖区, 县) give ``None``: they
    name no city on their own."""
    name = clean(text)
    if not name:
        return None
    if name in _CITY_PROVINCE:
        return name
    return _CITY_ALIASES.get(name)


def province_of_city(city: str | None) -> str | None:
    """The province a city-level division belongs to ("苏州市" -> "江苏省"), or ``None`` when the
    table does not know the city."""
    name = normalize_city(city)
    return _CITY_PROVINCE[name] if name is not None else None


# --- Address check --------------------------------------------------------------------------

Severity = Literal["error", "warning"]

#: A county-level name ends in one of these (自治县, 自治旗, 林区 and 特区 included, by their
#: last character); longest first so the documentation reads naturally.
DISTRICT_SUFFIXES: tuple[str, ...] = ("自治县", "自治旗", "林区", "特区", "区", "县", "市", "旗")

#: Below a city without districts (东莞市) or a directly governed county-level unit (仙桃市) the
#: next level is a town, a street office, a farm or (Xinjiang's XPCC) a regiment.
TOWN_SUFFIXES: tuple[str, ...] = ("镇", "乡", "街道", "街道办事处", "办事处", "农场", "团", "苏木")

#: Minimum length of the street address: shorter is never a deliverable address.
DETAIL_MIN_LENGTH = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressProblem:
    """One thing wrong with an address.

    ``code`` is the stable key (the UI, the rules and the tests match on it), ``field`` the form
    field it concerns, ``value`` the offending text (if any). ``severity`` "error" means a courier
    cannot be expected to deliver (the review holds the order); "warning" means the table could
    not confirm the value, which is shown but never holds an order.
    """

    code: str
    field: Literal["province", "city", "district", "detail"]
    severity: Severity
    message_zh: str
    message_en: str
    value: str = ""


def _problem(
    code: str,
    field: Literal["province", "city", "district", "detail"],
    zh: str,
    en: str,
    value: str = "",
    severity: Severity = "error",
) -> AddressProblem:
    return AddressProblem(
        code=code,
        field=field,
        severity=severity,
        message_zh=zh.format(value=value),
        message_en=en.format(value=value),
        value=value,
    )


def _ends_with_any(text: str, suffixes: Iterable[str]) -> bool:
    return any(text.endswith(s) and len(text) > len(s) for s in suffixes)


def _municipal_district(municipality: str, name: str) -> bool:
    """Whether ``name`` is a district or county of ``municipality``, also without its 区/县."""
    districts = MUNICIPAL_DISTRICTS[municipality]
    return name in districts or name + "区" in districts or name + "县" in districts


def _municipality_of_district(district: str) -> str | None:
    for municipality, districts in MUNICIPAL_DISTRICTS.items():
        if district in districts:
            return municipality
    return None


def check_address(
    province: str | None, city: str | None, district: str | None, detail: str | None
) -> list[AddressProblem]:
    """The problems of a receiver's address, most general first (an empty list: nothing found).

    Only what is certainly wrong is an error: a missing part, a province that does not exist, a
    known city in another province, a district that does not look like one, a street address
    too short or without a single word. A city or district the table does not know is a warning.
    """
    problems: list[AddressProblem] = []
    raw_province, raw_city = clean(province), clean(city)
    raw_district, raw_detail = clean(district), (detail or "").strip()

    prov: str | None = None
    if not raw_province:
        problems.append(_problem("province_missing", "province", "缺少省份", "Province is missing"))
    else:
        prov = normalize_province(raw_province)
        if prov is None:
            problems.append(
                _problem(
                    "province_unknown",
                    "province",
                    "未知的省份: {value}",
                    "Unknown province: {value}",
                    raw_province,
                )
            )

    city_name: str | None = None  # the official name, when the table knows the city
    district_required, district_free = True, False
    if not raw_city:
        problems.append(_problem("city_missing", "city", "缺少城市", "City is missing"))
    elif prov in MUNICIPALITIES:
        own = raw_city in (prov, prov.removesuffix("市")) or raw_city in MUNICIPAL_CITY_PLACEHOLDERS
        if own:
            city_name = prov
        elif _municipal_district(prov, raw_city):
            # JD style: the district stands at the city level, the next field is finer still.
            city_name, district_required, district_free = prov, False, True
        else:
            elsewhere = normalize_city(raw_city) or _municipality_of_district(raw_city)
            if elsewhere is not None:
                problems.append(_not_in_province(raw_city, prov))
            else:
                problems.append(_city_unrecognized(raw_city))
    elif prov in DIRECT_COUNTY_LEVEL and raw_city in DIRECT_COUNTY_PLACEHOLDERS:
        city_name = raw_city  # the district names the unit; checked below
    elif prov is not None:
        city_name = normalize_city(raw_city)
        if city_name is None:
            if PREFECTURES[prov]:  # HK, Macau, Taiwan: nothing to compare with
                problems.append(_city_unrecognized(raw_city))
        elif CITY_PROVINCE[city_name] != prov:
            problems.append(_not_in_province(raw_city, prov))
            city_name = None

    if prov in SPECIAL_ADMINISTRATIVE_REGIONS:
        district_required, district_free = False, True
    elif city_name in CITIES_WITHOUT_DISTRICTS or (
        city_name is not None and city_name in DIRECT_COUNTY_LEVEL.get(prov or "", ())
    ):
        district_required = False

    if not raw_district:
        if district_required:
            problems.append(
                _problem("district_missing", "district", "缺少区县", "District is missing")
            )
    elif not district_free:
        problems.extend(_district_problems(prov, city_name, raw_district))

    if not raw_detail:
        problems.append(
            _problem("detail_missing", "detail", "缺少详细地址", "Street address is missing")
        )
    else:
        if len(clean(raw_detail)) < DETAIL_MIN_LENGTH:
            problems.append(
                _problem(
                    "detail_too_short",
                    "detail",
                    "详细地址太短: {value}",
                    "Street address is too short: {value}",
                    raw_detail,
                )
            )
        if not any(ch.isalpha() for ch in raw_detail):
            problems.append(
                _problem(
                    "detail_digits_only",
                    "detail",
                    "详细地址只有数字或符号: {value}",
                    "Street address has only digits or symbols: {value}",
                    raw_detail,
                )
            )
    return problems


def _not_in_province(city: str, province: str) -> AddressProblem:
    return AddressProblem(
        code="city_not_in_province",
        field="city",
        severity="error",
        message_zh=f"{city}不属于{province}",
        message_en=f"{city} is not in {province}",
        value=city,
    )


def _city_unrecognized(city: str) -> AddressProblem:
    return _problem(
        "city_unrecognized",
        "city",
        "地址库中没有此城市: {value}",
        "City not in the region table: {value}",
        city,
        severity="warning",
    )


def _district_problems(prov: str | None, city: str | None, district: str) -> list[AddressProblem]:
    if prov in MUNICIPALITIES:
        if district in MUNICIPAL_DISTRICTS[prov]:
            return []
        if _municipality_of_district(district) is not None:
            return [
                AddressProblem(
                    code="district_not_in_city",
                    field="district",
                    severity="error",
                    message_zh=f"{district}不属于{prov}",
                    message_en=f"{district} is not in {prov}",
                    value=district,
                )
            ]
        if _ends_with_any(district, DISTRICT_SUFFIXES):
            return [
                _problem(
                    "district_unrecognized",
                    "district",
                    "地址库中没有此区县: {value}",
                    "District not in the region table: {value}",
                    district,
                    severity="warning",
                )
            ]
    suffixes: tuple[str, ...] = DISTRICT_SUFFIXES
    if (
        prov == "台湾省"
        or city in CITIES_WITHOUT_DISTRICTS
        or city in DIRECT_COUNTY_PLACEHOLDERS
        or (city is not None and city in DIRECT_COUNTY_LEVEL.get(prov or "", ()))
    ):
        suffixes = DISTRICT_SUFFIXES + TOWN_SUFFIXES
    if _ends_with_any(district, suffixes):
        return []
    return [
        _problem(
            "district_invalid",
            "district",
            "区县名称不正确: {value}",
            "Not a district or county: {value}",
            district,
        )
    ]


def address_errors(
    province: str | None, city: str | None, district: str | None, detail: str | None
) -> list[AddressProblem]:
    """Only the problems that make an address undeliverable (what the review holds on)."""
    return [p for p in check_address(province, city, district, detail) if p.severity == "error"]


# --- Free-text addresses --------------------------------------------------------------------

#: After a bare short name ("朝阳"), one of these means the name is the start of a longer one
#: (朝阳区, not 朝阳市): the short form is not taken.
_NAME_CONTINUES = frozenset("区县市旗镇乡州盟")


class _Prefixes:
    """Names and short aliases indexed by length: the longest one a text starts with is found by
    a few dictionary lookups (one per distinct length), not by trying every name."""

    def __init__(self, names: Iterable[str], short: Mapping[str, str]) -> None:
        self.names = frozenset(names)
        self.aliases = frozenset(short)
        self.lengths = sorted({len(n) for n in self.names | self.aliases}, reverse=True)

    def longest(self, text: str) -> str:
        """The longest name (or alias) that ``text`` starts with; a name wins over an alias of
        the same length, and an alias that is only the start of a longer name is skipped."""
        for k in self.lengths:
            if k > len(text):
                continue
            head = text[:k]
            if head in self.names:
                return head
            if head in self.aliases and text[k : k + 1] not in _NAME_CONTINUES:
                return head
        return ""


_PROVINCE_PREFIXES = _Prefixes(PROVINCES, _PROVINCE_ALIASES)
_CITY_FIRST_PREFIXES = _Prefixes(_CITY_PROVINCE, {})
_CITY_PREFIXES = _Prefixes((*_CITY_PROVINCE, *MUNICIPAL_CITY_PLACEHOLDERS), _CITY_ALIASES)


def _longest_prefix(text: str, names: Iterable[str], *, short: Mapping[str, str]) -> str:
    """The longest of ``names`` (or of the aliases in ``short``) that ``text`` starts with,
    skipping an alias that is only the start of a longer name (the reference the indexes are
    tested against)."""
    best = ""
    for name in names:
        if len(name) > len(best) and text.startswith(name):
            best = name
    for alias in short:
        if (
            len(alias) > len(best)
            and text.startswith(alias)
            and text[len(alias) : len(alias) + 1] not in _NAME_CONTINUES
        ):
            best = alias
    return best


def split_address(text: str | None) -> tuple[str | None, str | None, str]:
    """(province, city, rest) of an address written as one string ("浙江杭州西湖区文三路1号"
    -> ("浙江省", "杭州市", "西湖区文三路1号")), official names, whitespace removed.

    Used where a person types a whole address (a blacklist entry) that must compare equal to the
    same address arriving in parts. A leading full city name wins over a province short form it
    starts with (吉林市 is a city, 海南藏族自治州 is in 青海省); a city that is not in the
    province found first is left in the rest. A municipality's city part (北京市 / 市辖区 / 县)
    is dropped: it repeats the province.
    """
    rest = clean(text)
    prov_alias = _PROVINCE_PREFIXES.longest(rest)
    city_first = _CITY_FIRST_PREFIXES.longest(rest)
    province: str | None = None
    if prov_alias and len(prov_alias) >= len(city_first):
        province = _PROVINCE_ALIASES[prov_alias]
        rest = rest[len(prov_alias) :]
    city_alias = _CITY_PREFIXES.longest(rest)
    city: str | None = None
    if city_alias:
        name = _CITY_ALIASES.get(city_alias, city_alias)
        if name in MUNICIPAL_CITY_PLACEHOLDERS:
            if province in MUNICIPALITIES:
                rest = rest[len(city_alias) :]
        elif province is None or _CITY_PROVINCE[name] == province:
            city, rest = name, rest[len(city_alias) :]
            province = _CITY_PROVINCE[name]
    if province in MUNICIPALITIES:
        city = None
    return province, city, rest
