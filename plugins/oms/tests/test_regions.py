"""The region table and the address check: real data, forgiving of platform spellings, strict
only where an address is certainly undeliverable."""

from __future__ import annotations

import pytest
from erp_oms import regions
from erp_oms.regions import (
    CITY_PROVINCE,
    DIRECT_COUNTY_LEVEL,
    MUNICIPAL_DISTRICTS,
    MUNICIPALITIES,
    PREFECTURES,
    PROVINCES,
    AddressProblem,
    address_errors,
    check_address,
    normalize_city,
    normalize_province,
    province_of_city,
    split_address,
)
from hypothesis import given
from hypothesis import strategies as st

ALL_PREFECTURES = [(city, prov) for prov, cities in PREFECTURES.items() for city in cities]

CODES = {
    "province_missing",
    "province_unknown",
    "city_missing",
    "city_not_in_province",
    "city_unrecognized",
    "district_missing",
    "district_invalid",
    "district_not_in_city",
    "district_unrecognized",
    "detail_missing",
    "detail_too_short",
    "detail_digits_only",
}


def codes(problems: list[AddressProblem]) -> list[str]:
    return [p.code for p in problems]


# --- The table ------------------------------------------------------------------------------


def test_34_provincial_level_divisions():
    assert len(PROVINCES) == 34
    assert len(set(PROVINCES)) == 34
    assert sum(p.endswith("省") for p in PROVINCES) == 23
    assert sum(p.endswith("自治区") for p in PROVINCES) == 5
    assert sum(p.endswith("特别行政区") for p in PROVINCES) == 2
    assert set(MUNICIPALITIES) == {"北京市", "天津市", "上海市", "重庆市"}
    assert set(MUNICIPALITIES) <= set(PROVINCES)
    for name in ("广西壮族自治区", "香港特别行政区", "澳门特别行政区", "台湾省", "黑龙江省"):
        assert name in PROVINCES


def test_333_prefecture_level_divisions_with_unique_names():
    names = [city for city, _ in ALL_PREFECTURES]
    assert len(names) == 333
    assert len(set(names)) == 333
    assert not set(names) & set(PROVINCES)
    # 293 cities, 7 prefectures, 30 autonomous prefectures, 3 leagues
    assert sum(n.endswith("自治州") for n in names) == 30
    assert sum(n.endswith("地区") for n in names) == 7
    assert sum(n.endswith("盟") for n in names) == 3
    assert sum(n.endswith("市") for n in names) == 293


@pytest.mark.parametrize(
    ("province", "count"),
    [
        ("河北省", 11),
        ("内蒙古自治区", 12),
        ("辽宁省", 14),
        ("黑龙江省", 13),
        ("江苏省", 13),
        ("浙江省", 11),
        ("安徽省", 16),
        ("山东省", 16),
        ("河南省", 17),
        ("湖北省", 13),
        ("广东省", 21),
        ("广西壮族自治区", 14),
        ("海南省", 4),
        ("四川省", 21),
        ("云南省", 16),
        ("西藏自治区", 7),
        ("青海省", 8),
        ("宁夏回族自治区", 5),
        ("新疆维吾尔自治区", 14),
        ("北京市", 0),
        ("香港特别行政区", 0),
    ],
)
def test_prefecture_counts(province, count):
    assert len(PREFECTURES[province]) == count


def test_every_city_maps_to_a_province_in_the_list():
    for city, prov in ALL_PREFECTURES:
        assert province_of_city(city) == prov
    for city, prov in CITY_PROVINCE.items():
        assert prov in PROVINCES, city
    for prov, units in DIRECT_COUNTY_LEVEL.items():
        assert prov in PROVINCES
        for unit in units:
            assert province_of_city(unit) == prov
            assert unit not in dict(ALL_PREFECTURES)


@pytest.mark.parametrize(
    ("city", "province"),
    [
        ("杭州市", "浙江省"),
        ("苏州市", "江苏省"),
        ("延边朝鲜族自治州", "吉林省"),
        ("锡林郭勒盟", "内蒙古自治区"),
        ("儋州市", "海南省"),
        ("三沙市", "海南省"),
        ("大兴安岭地区", "黑龙江省"),
        ("阿里地区", "西藏自治区"),
        ("那曲市", "西藏自治区"),
        ("海西蒙古族藏族自治州", "青海省"),
        ("伊犁哈萨克自治州", "新疆维吾尔自治区"),
        ("塔城地区", "新疆维吾尔自治区"),
        ("襄阳市", "湖北省"),
        ("恩施土家族苗族自治州", "湖北省"),
        ("铜仁市", "贵州省"),
        ("毕节市", "贵州省"),
        ("普洱市", "云南省"),
        ("吉林市", "吉林省"),
        ("朝阳市", "辽宁省"),
        ("伊春市", "黑龙江省"),
        ("宜春市", "江西省"),
        ("台州市", "浙江省"),
        ("泰州市", "江苏省"),
        ("东莞市", "广东省"),
        ("海东市", "青海省"),
        ("中卫市", "宁夏回族自治区"),
        ("崇左市", "广西壮族自治区"),
        ("仙桃市", "湖北省"),
        ("神农架林区", "湖北省"),
        ("济源市", "河南省"),
        ("琼海市", "海南省"),
        ("石河子市", "新疆维吾尔自治区"),
        ("北京市", "北京市"),
        ("重庆市", "重庆市"),
    ],
)
def test_real_cities(city, province):
    assert province_of_city(city) == province


@pytest.mark.parametrize(
    ("text", "city"),
    [
        ("杭州", "杭州市"),
        (" 杭州市 ", "杭州市"),
        ("恩施州", "恩施土家族苗族自治州"),
        ("恩施", "恩施土家族苗族自治州"),
        ("延边", "延边朝鲜族自治州"),
        ("西双版纳", "西双版纳傣族自治州"),
        ("海南州", "海南藏族自治州"),
        ("锡林郭勒", "锡林郭勒盟"),
        ("大兴安岭", "大兴安岭地区"),
        ("襄樊市", "襄阳市"),
        ("襄樊", "襄阳市"),
        ("莱芜市", "济南市"),
        ("铜仁地区", "铜仁市"),
        ("上海", "上海市"),
    ],
)
def test_city_short_and_old_forms(text, city):
    assert normalize_city(text) == city


@pytest.mark.parametrize("text", [None, "", "   ", "海南", "市辖区", "县", "Springfield", "杭"])
def test_not_a_city(text):
    assert normalize_city(text) is None
    assert province_of_city(text) is None


def test_city_aliases_never_shadow_official_names_and_are_unambiguous():
    aliases = regions._CITY_ALIASES
    assert not set(aliases) & set(CITY_PROVINCE)
    assert set(aliases.values()) <= set(CITY_PROVINCE)
    # every autonomous prefecture has a short form, so "恩施州" and the like are understood
    for city, _ in ALL_PREFECTURES:
        if city.endswith("自治州"):
            assert any(target == city for target in aliases.values()), city


def test_municipality_districts():
    assert {m: len(d) for m, d in MUNICIPAL_DISTRICTS.items()} == {
        "北京市": 16,
        "天津市": 16,
        "上海市": 16,
        "重庆市": 38,
    }
    everything = [d for ds in MUNICIPAL_DISTRICTS.values() for d in ds]
    assert len(everything) == len(set(everything))
    assert all(d.endswith(("区", "县")) for d in everything)
    assert "浦东新区" in MUNICIPAL_DISTRICTS["上海市"]
    assert "滨海新区" in MUNICIPAL_DISTRICTS["天津市"]
    assert "石柱土家族自治县" in MUNICIPAL_DISTRICTS["重庆市"]


@pytest.mark.parametrize(
    ("text", "province"),
    [
        ("浙江", "浙江省"),
        ("浙江省", "浙江省"),
        (" 浙江 ", "浙江省"),
        ("广西", "广西壮族自治区"),
        ("广西省", "广西壮族自治区"),
        ("内蒙古", "内蒙古自治区"),
        ("内蒙", "内蒙古自治区"),
        ("西藏", "西藏自治区"),
        ("宁夏", "宁夏回族自治区"),
        ("新疆", "新疆维吾尔自治区"),
        ("黑龙江", "黑龙江省"),
        ("北京", "北京市"),
        ("重庆市", "重庆市"),
        ("香港", "香港特别行政区"),
        ("中国香港", "香港特别行政区"),
        ("澳门", "澳门特别行政区"),
        ("台湾", "台湾省"),
        ("中国浙江省", "浙江省"),
    ],
)
def test_normalize_province(text, province):
    assert normalize_province(text) == province


@pytest.mark.parametrize(
    "text", [None, "", "浙", "杭州市", "中国", "浙江省省", "Zhejiang", "广西市"]
)
def test_not_a_province(text):
    assert normalize_province(text) is None


@given(st.sampled_from(PROVINCES))
def test_normalize_province_is_idempotent(name):
    assert normalize_province(name) == name
    assert normalize_province(normalize_province(name)) == name


# --- The address check ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        ("浙江省", "杭州市", "西湖区", "文三路100号"),
        ("浙江", "杭州", "西湖区", "文三路 100 号"),
        ("浙江省", "杭州市", "建德市", "新安江街道某路1号"),
        ("北京市", "北京市", "朝阳区", "建国路88号"),
        ("北京市", "市辖区", "朝阳区", "建国路88号"),
        ("北京", "朝阳区", "三环到四环之间", "建国路88号"),
        ("北京", "朝阳区", "", "建国路88号"),
        ("重庆市", "县", "城口县", "葛城街道1号"),
        ("上海", "上海", "浦东新区", "世纪大道100号"),
        ("广东省", "东莞市", "虎门镇", "某某路1号"),
        ("广东省", "东莞市", "", "虎门镇某某路1号"),
        ("广东省", "中山市", "石岐街道", "某某路1号"),
        ("湖北省", "仙桃市", "郑场镇", "某某村3组"),
        ("湖北省", "省直辖县级行政区划", "神农架林区", "松柏镇1号"),
        ("海南省", "省直辖县级行政区划", "琼海市", "嘉积镇1号"),
        ("海南", "儋州市", "那大镇", "某某路1号"),
        ("新疆", "石河子市", "北泉镇", "某某路1号"),
        ("内蒙古自治区", "锡林郭勒盟", "锡林浩特市", "某某路1号"),
        ("内蒙古", "呼伦贝尔市", "鄂伦春自治旗", "某某路1号"),
        ("内蒙古", "赤峰市", "克什克腾旗", "某某路1号"),
        ("贵州省", "六盘水市", "六枝特区", "某某路1号"),
        ("吉林", "延边朝鲜族自治州", "延吉市", "某某路1号"),
        ("海南省", "白沙黎族自治县", "牙叉镇", "某某路1号"),
        ("云南", "红河哈尼族彝族自治州", "屏边苗族自治县", "某某路1号"),
        ("香港特别行政区", "九龙", "", "弥敦道1号"),
        ("台湾", "台北市", "大安区", "某某路1号"),
        ("浙江省", "杭州市", "西湖区", "No.1 Rd"),
        ("北京", "海淀", "中关村", "某某路1号"),
    ],
)
def test_valid_addresses(address):
    assert check_address(*address) == []


def test_every_part_missing():
    problems = check_address("", None, " ", "\u3000")
    assert codes(problems) == [
        "province_missing",
        "city_missing",
        "district_missing",
        "detail_missing",
    ]
    assert [p.field for p in problems] == ["province", "city", "district", "detail"]
    assert all(p.severity == "error" for p in problems)
    assert all(p.message_zh and p.message_en for p in problems)


@pytest.mark.parametrize(
    ("address", "code", "field"),
    [
        (("浙江X", "杭州市", "西湖区", "文三路100号"), "province_unknown", "province"),
        (("浙江省", "苏州市", "姑苏区", "某某路1号"), "city_not_in_province", "city"),
        (("浙江", "苏州", "姑苏区", "某某路1号"), "city_not_in_province", "city"),
        (("北京市", "上海市", "浦东新区", "某某路1号"), "city_not_in_province", "city"),
        (("上海", "朝阳区", "", "某某路1号"), "city_not_in_province", "city"),
        (("浙江省", "杭州市", "文三路", "某某路1号"), "district_invalid", "district"),
        (("浙江省", "杭州市", "三墩镇", "某某路1号"), "district_invalid", "district"),
        (("浙江省", "杭州市", "区", "某某路1号"), "district_invalid", "district"),
        (("上海市", "上海市", "朝阳区", "某某路1号"), "district_not_in_city", "district"),
        (("浙江省", "杭州市", "西湖区", "1号"), "detail_too_short", "detail"),
        (("浙江省", "杭州市", "西湖区", "文三路"), "detail_too_short", "detail"),
        (("浙江省", "杭州市", "西湖区", "12345678"), "detail_digits_only", "detail"),
        (("浙江省", "杭州市", "西湖区", "12-34-56"), "detail_digits_only", "detail"),
        (("浙江省", "杭州市", "西湖区", "１２３４５"), "detail_digits_only", "detail"),
    ],
)
def test_errors(address, code, field):
    problems = check_address(*address)
    found = [p for p in problems if p.code == code]
    assert found, problems
    assert found[0].field == field
    assert found[0].severity == "error"
    assert found[0] in address_errors(*address)


def test_error_messages_name_the_value():
    (problem,) = check_address("浙江X", "杭州市", "西湖区", "文三路100号")
    assert problem.value == "浙江X"
    assert "浙江X" in problem.message_zh and "浙江X" in problem.message_en
    (problem,) = check_address("浙江省", "苏州市", "姑苏区", "某某路1号")
    assert problem.message_zh == "苏州市不属于浙江省"
    assert problem.message_en == "苏州市 is not in 浙江省"


def test_short_detail_counts_characters_not_spaces():
    assert codes(check_address("浙江", "杭州", "西湖区", "1 2 3")) == [
        "detail_too_short",
        "detail_digits_only",
    ]
    assert check_address("浙江", "杭州", "西湖区", "文三路1") == []


@pytest.mark.parametrize(
    ("address", "code"),
    [
        (("浙江省", "西湖市", "西湖区", "文三路100号"), "city_unrecognized"),
        (("浙江省", "市辖区", "西湖区", "文三路100号"), "city_unrecognized"),
        (("北京市", "北京市", "崇文区", "某某路1号"), "district_unrecognized"),
        (("北京", "中关村", "海淀区", "某某路1号"), "city_unrecognized"),
    ],
)
def test_warnings_never_block(address, code):
    problems = check_address(*address)
    assert codes(problems) == [code]
    assert problems[0].severity == "warning"
    assert address_errors(*address) == []


def test_unknown_province_skips_the_city_check():
    assert codes(check_address("火星", "杭州市", "西湖区", "文三路100号")) == ["province_unknown"]


@given(st.sampled_from(ALL_PREFECTURES), st.sampled_from(PROVINCES))
def test_known_city_in_the_right_province_only(city_province, other):
    city, province = city_province
    assert check_address(province, city, "某某区", "某某路1号") == []
    if other != province:
        assert "city_not_in_province" in codes(check_address(other, city, "某某区", "某某路1号"))


text = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["", "市辖区", "县", "北京"]))


@given(text, text, text, text)
def test_check_address_never_raises_and_speaks_known_codes(province, city, district, detail):
    problems = check_address(province, city, district, detail)
    for p in problems:
        assert p.code in CODES
        assert p.severity in ("error", "warning")
        assert p.field in ("province", "city", "district", "detail")
        assert p.message_zh and p.message_en
    if province is None or not province.strip():
        assert "province_missing" in codes(problems)
    assert address_errors(province, city, district, detail) == [
        p for p in problems if p.severity == "error"
    ]


@given(st.sampled_from(ALL_PREFECTURES), st.sampled_from([" ", "\u3000", "\t"]))
def test_whitespace_does_not_matter(city_province, space):
    city, province = city_province
    padded = (space + province, city + space, space + "某某区", "某某路1号" + space)
    assert check_address(*padded) == []


# --- Free-text addresses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("浙江杭州西湖区文三路1号", ("浙江省", "杭州市", "西湖区文三路1号")),
        ("浙江省 杭州市 西湖区 文三路1号", ("浙江省", "杭州市", "西湖区文三路1号")),
        ("杭州西湖区", ("浙江省", "杭州市", "西湖区")),
        ("吉林市船营区1号", ("吉林省", "吉林市", "船营区1号")),
        ("吉林省吉林市船营区", ("吉林省", "吉林市", "船营区")),
        ("海南藏族自治州共和县1号", ("青海省", "海南藏族自治州", "共和县1号")),
        ("海南省海口市美兰区1号", ("海南省", "海口市", "美兰区1号")),
        ("恩施州恩施市1号", ("湖北省", "恩施土家族苗族自治州", "恩施市1号")),
        ("北京市朝阳区建国路88号", ("北京市", None, "朝阳区建国路88号")),
        ("北京北京市朝阳区建国路88号", ("北京市", None, "朝阳区建国路88号")),
        ("北京市市辖区朝阳区1号", ("北京市", None, "朝阳区1号")),
        ("重庆市县城口县1号", ("重庆市", None, "城口县1号")),
        ("上海浦东新区1号", ("上海市", None, "浦东新区1号")),
        ("朝阳区建国路", (None, None, "朝阳区建国路")),  # not 朝阳市 of 辽宁省
        ("朝阳双塔区", ("辽宁省", "朝阳市", "双塔区")),
        ("浙江苏州市姑苏区", ("浙江省", None, "苏州市姑苏区")),
        ("文三路1号", (None, None, "文三路1号")),
        ("", (None, None, "")),
        (None, (None, None, "")),
    ],
)
def test_split_address(text, parts):
    assert split_address(text) == parts


_NAME_TEXT = st.sampled_from(
    [*PROVINCES, *CITY_PROVINCE, *regions._PROVINCE_ALIASES, *regions._CITY_ALIASES, "市辖区", "县"]
)


@given(
    head=_NAME_TEXT,
    tail=st.text(alphabet="区县市旗镇乡州盟路号1朝阳江苏", max_size=4),
    cut=st.integers(min_value=0, max_value=3),
)
def test_prefix_index_finds_what_trying_every_name_finds(head, tail, cut):
    text = head[: len(head) - cut] + tail
    for index, names, short in (
        (regions._PROVINCE_PREFIXES, PROVINCES, regions._PROVINCE_ALIASES),
        (regions._CITY_FIRST_PREFIXES, regions._CITY_PROVINCE, {}),
        (
            regions._CITY_PREFIXES,
            (*regions._CITY_PROVINCE, *regions.MUNICIPAL_CITY_PLACEHOLDERS),
            regions._CITY_ALIASES,
        ),
    ):
        assert index.longest(text) == regions._longest_prefix(text, names, short=short)
