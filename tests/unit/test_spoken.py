"""Loudspeaker text: numbers and units spoken, no Arabic digit left."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from warnd.spoken import spell_digits, to_spoken

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
ARABIC = re.compile(r"[0-9０-９]")


def assert_spoken(text: str) -> str:
    result = to_spoken(text)
    assert not ARABIC.search(result), f"digits left in {result!r} (from {text!r})"
    return result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # what cn2an already handles
        ("100毫米", "一百毫米"),
        ("20-40毫米", "二十到四十毫米"),
        ("2020年2月13日17时15分", "二零二零年二月十三日十七时十五分"),
        ("37℃", "三十七摄氏度"),
        ("最高气温39.5℃", "最高气温三十九点五摄氏度"),
        ("-2.5℃", "零下二点五摄氏度"),
        ("50%", "百分之五十"),
        ("10.5", "十点五"),
        ("12小时", "十二小时"),
        # defence-guide thresholds (domain doc §2)
        ("12小时内降雨量将达50毫米以上", "十二小时内降雨量将达五十毫米以上"),
        ("6小时内降雨量将达50毫米以上", "六小时内降雨量将达五十毫米以上"),
        ("3小时内降雨量将达100毫米以上", "三小时内降雨量将达一百毫米以上"),
        ("1h ≥ 35mm", "一小时 大于等于 三十五毫米"),
        ("3 h雨量≤20 mm", "三小时雨量小于等于二十毫米"),
        # compound units
        ("风速17.2米/秒", "风速十七点二米每秒"),
        ("风速20m/s", "风速二十米每秒"),
        ("雨强50毫米/小时", "雨强五十毫米每小时"),
        ("雨强50mm/h", "雨强五十毫米每小时"),
        ("时速30km/h", "时速三十公里每小时"),
        ("移动速度25公里/小时", "移动速度二十五公里每小时"),
        ("PM2.5浓度大于115微克/立方米", "PM二点五浓度大于一百一十五微克每立方米"),
        # Roman numerals in level words, Unicode and ASCII
        ("Ⅰ级", "一级"),
        ("Ⅱ级应急响应", "二级应急响应"),
        ("III级", "三级"),
        ("IV级", "四级"),
        ("Ⅳ级", "四级"),
        ("河南省气象局发布大风蓝色预警[IV级/一般]", "河南省气象局发布大风蓝色预警[四级/一般]"),
        ("启动防汛Ⅲ级应急响应", "启动防汛三级应急响应"),
        # ranges
        ("风力7-8级", "风力七到八级"),
        ("阵风9~10级", "阵风九到十级"),
        ("降雨量50～80毫米", "降雨量五十到八十毫米"),
        ("气温28—35℃", "气温二十八到三十五摄氏度"),
        ("100－200毫米", "一百到二百毫米"),
        ("20毫米-40毫米", "二十毫米到四十毫米"),
        # times and dates
        ("17:15", "十七时十五分"),
        ("08:00起", "八时起"),
        ("2026-07-01 17:05", "二零二六年七月一日 十七时五分"),
        ("气温-5℃", "气温零下五摄氏度"),
        # phone numbers: digit by digit, 1 as 幺
        ("咨询电话023-53222110", "咨询电话零二三，五三二二二幺幺零"),
        ("13812345678", "幺三八幺二三四五六七八"),
        ("请拨打12379", "请拨打幺二三七九"),
        ("请拨打110或119", "请拨打幺幺零或幺幺九"),
        ("值班电话：023 53222110", "值班电话：零二三，五三二二二幺幺零"),
        # other long digit strings: digit by digit with 一
        ("区划代码500228000000", "区划代码五零零二二八零零零零零零"),
        ("发布单位编码50022841600000", "发布单位编码五零零二二八四一六零零零零零"),
        # but a quantity stays a quantity
        ("转移群众12000人", "转移群众一万二千人"),
        ("12,000户", "一万二千户"),
        ("雨量达120毫米", "雨量达一百二十毫米"),
        # full-width digits
        ("１２小时", "十二小时"),
    ],
)
def test_golden(text: str, expected: str) -> None:
    assert assert_spoken(text) == expected


def test_domain_doc_sms_examples_read_aloud() -> None:
    wushan = (
        "巫山县气象局2020年2月13日17时15分发布大风蓝色预警信号:预计我县大部及沿江河谷地区将出现7级以上阵风，"
        "可能会造成大风灾害，请注意加强防范。"
    )
    assert assert_spoken(wushan) == (
        "巫山县气象局二零二零年二月十三日十七时十五分发布大风蓝色预警信号:预计我县大部及沿江河谷地区将出现"
        "七级以上阵风，可能会造成大风灾害，请注意加强防范。"
    )
    zhuhai = "【预警解除】珠海市气象台08月30日15时13分解除珠海市雷雨大风黄色预警"
    assert assert_spoken(zhuhai) == "【预警解除】珠海市气象台八月三十日十五时十三分解除珠海市雷雨大风黄色预警"
    flash = "1 h ≥ 35/45/60/80 mm"
    assert_spoken(flash)


def test_criteria_from_every_hazard_colour_are_spoken_without_digits() -> None:
    hazards = yaml.safe_load((TEMPLATES / "zh-CN" / "hazards.yaml").read_text(encoding="utf-8"))
    checked = 0
    for entry in hazards.values():
        for wording in (entry.get("colours") or {}).values():
            for key in ("criteria", "advice", "actions"):
                if wording.get(key):
                    assert_spoken(wording[key])
                    checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    "text",
    ["", "没有数字的文本", "PM2.5", "第3号台风", "编号2026-001", "1.2.3", "3.5万人", "0", "007", "1/2", "٣"],
)
def test_no_digit_survives_odd_shapes(text: str) -> None:
    assert_spoken(text)


def test_text_without_numbers_is_unchanged() -> None:
    text = "全体村民请注意！请远离河道、低洼地带，确保人身安全。"
    assert to_spoken(text) == text


@pytest.mark.parametrize("language", ["zh", "zh-CN", "zh_CN", "zh-Hans", "ZH-cn"])
def test_chinese_language_tags(language: str) -> None:
    assert to_spoken("3小时", language) == "三小时"


@pytest.mark.parametrize("language", ["en", "en-US", "ug", "bo"])
def test_other_languages_unchanged(language: str) -> None:
    text = "Up to 100 mm of rain in 3 hours; call 023-53222110. Level IV."
    assert to_spoken(text, language) == text
    assert to_spoken("", language) == ""


def test_spell_digits() -> None:
    assert spell_digits("0123456789") == "零一二三四五六七八九"
    assert spell_digits("0123456789", phone=True) == "零幺二三四五六七八九"
    assert spell_digits("02-3") == "零二三"
