"""Text for a loudspeaker's text-to-speech: numbers and units as spoken Chinese.

Loudspeaker scripts are written to be heard (``early-warning-cn.md`` §7): 100毫米 is read 一百毫米,
3小时 三小时.
Terminals' TTS engines differ in how they read digits, symbols and Roman numerals, so the script handed to
them holds no Arabic digits at all.

``cn2an.transform(text, "an2cn")`` does most of the work (quantities, dates, decimals, percentages, ℃).
Before it runs, this module rewrites what it gets wrong or leaves alone:

- compound units: 米/秒 → 米每秒, 毫米/小时 → 毫米每小时, km/h → 公里每小时 (and mm, km, m after a number);
- Roman numerals in level words: Ⅳ级 / IV级 → 四级 (Unicode and ASCII forms);
- ranges with ~ — － - between numbers → 到 (7-8级 → 七到八级);
- clock times 17:15 → 十七时十五分, dates 2026-07-01 → 二零二六年七月一日, negative temperatures → 零下;
- phone numbers read digit by digit with 1 as 幺 (023-53222110 → 零二三，五三二二二幺幺零): landlines,
  mobiles, 400/800 numbers, any number after 电话/热线/拨打…, and service numbers (110, 119, 120, 12379…);
- other digit strings of five or more digits (admin codes, serial numbers) read digit by digit, unless a
  measure word follows (12000人 stays a quantity: 一万二千人).

Whatever digit survives all of that is spelled one by one.
"""

from __future__ import annotations

import logging
import re
import unicodedata

import cn2an

_DIGITS = "零一二三四五六七八九"
_PHONE_DIGITS = "零幺二三四五六七八九"

_FULLWIDTH = str.maketrans("％", "%")

_ROMAN = {"Ⅰ": 1, "Ⅱ": 2, "Ⅲ": 3, "Ⅳ": 4, "Ⅴ": 5, "Ⅵ": 6, "Ⅶ": 7, "Ⅷ": 8, "Ⅸ": 9, "Ⅹ": 10, "Ⅺ": 11, "Ⅻ": 12}
_ASCII_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9, "X": 10}
_NUMBER_WORDS = ["", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二"]

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_UNICODE_ROMAN = re.compile("[" + "".join(_ROMAN) + "]")
_ASCII_ROMAN_LEVEL = re.compile(r"(?<![A-Za-z])(VIII|VII|VI|IV|IX|III|II|I|V|X)(?=\s*级)")

# compound units, then bare ASCII units right after a number
_PER = [
    (re.compile(r"(?i)km\s*/\s*h|公里\s*/\s*(?:小时|时)|千米\s*/\s*(?:小时|时)"), "公里每小时"),
    (re.compile(r"(?i)mm\s*/\s*h|毫米\s*/\s*(?:小时|时)"), "毫米每小时"),
    (re.compile(r"m\s*/\s*s|米\s*/\s*秒"), "米每秒"),
    (re.compile(r"(?:μg|ug|微克)\s*/\s*(?:m³|m3|立方米)"), "微克每立方米"),
    (re.compile(r"(?:m³|m3|立方米)\s*/\s*(?:s|秒)"), "立方米每秒"),
]
_BARE_UNITS = [
    (re.compile(r"(?<=\d)\s*(?:°C|℃)"), "℃"),
    (re.compile(r"(?<=\d)\s*mm(?![A-Za-z])"), "毫米"),
    (re.compile(r"(?<=\d)\s*cm(?![A-Za-z])"), "厘米"),
    (re.compile(r"(?<=\d)\s*km(?![A-Za-z])"), "公里"),
    (re.compile(r"(?<=\d)\s*m(?![A-Za-z])"), "米"),
    (re.compile(r"(?<=\d)\s*hPa(?![A-Za-z])"), "百帕"),
    (re.compile(r"(?<=\d)\s*h(?![A-Za-z])"), "小时"),
    (re.compile(r"(?<=\d)\s*min(?![A-Za-z])"), "分钟"),
]
_SYMBOLS = str.maketrans({"≥": "大于等于", "≤": "小于等于"})

_DATE = re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_TIME = re.compile(r"(?<![\d:])([01]?\d|2[0-4])[:：]([0-5]\d)(?::([0-5]\d))?(?![\d:])")

_SEP = r"[-－—–\s]?"
_PHONES = [
    re.compile(r"(?<![\d.])0\d{2,3}" + _SEP + r"\d{7,8}(?![\d.])"),  # landline with area code
    re.compile(r"(?<![\d.])[48]00" + _SEP + r"\d{3}" + _SEP + r"\d{4}(?![\d.])"),  # 400/800 numbers
    re.compile(r"(?<![\d.])1[3-9]\d" + _SEP + r"\d{4}" + _SEP + r"\d{4}(?![\d.])"),  # mobile
]
# a number right after a phone word is a phone number whatever its shape (拨打110, 热线12379)
_PHONE_WORDS = "电话|热线|拨打|致电|手机|号码|联系方式|传真|报警|急救|求救"
_PHONE_CONTEXT = re.compile(r"(" + _PHONE_WORDS + r")([：:\s]*)(\d(?:[\d\-－—–]|\s(?=\d))*)")
# service numbers people are told to call; only where no unit follows (120毫米 stays a quantity)
_SERVICE_NUMBERS = re.compile(
    r"(?<![\d.])(110|119|120|122|12110|12119|12345|12379|12395)(?![\d.])"
    r"(?=$|[\s，。；、！？,.;!?）)]|[或和及报求急电热等])"
)

_MEASURE_WORDS = "人户元万亿米毫厘公千克吨亩顷平立座处间个名辆台套只头条家次余多年月日号天"
_LONG_DIGITS = re.compile(r"(?<![\d.])\d{5,}(?![\d.])(?!\s*[" + _MEASURE_WORDS + "])")

_NUMBER = r"\d+(?:\.\d+)?"
_RANGE = re.compile(r"(" + _NUMBER + r"(?:[%℃]|[\u4e00-\u9fff]{1,3})?)\s*(?:[~～〜]|[-－—–]{1,2})\s*(?=\d)")
_NEGATIVE_TEMPERATURE = re.compile(r"(?<![0-9A-Za-z])[-－−](?=" + _NUMBER + r"\s*℃)")
_NEGATIVE = re.compile(r"(?<![0-9A-Za-z])[-－−](?=\d)")
_ANY_DIGIT = re.compile(r"\d")

_log = logging.getLogger(__name__)


def is_chinese(language: str | None) -> bool:
    return (language or "zh-CN").lower().replace("_", "-").split("-")[0] == "zh"


def spell_digits(digits: str, *, phone: bool = False) -> str:
    """Read a digit string digit by digit (phone=True reads 1 as 幺); other characters are dropped."""
    table = _PHONE_DIGITS if phone else _DIGITS
    return "".join(table[unicodedata.decimal(d)] for d in digits if unicodedata.decimal(d, None) is not None)


def _phone(number: str) -> str:
    groups = [g for g in re.split(r"[-－—–\s]+", number) if g]
    return "，".join(spell_digits(g, phone=True) for g in groups)


def _time(match: re.Match[str]) -> str:
    hour, minute, second = match.group(1), match.group(2), match.group(3)
    text = f"{int(hour)}时"
    if int(minute) or (second and int(second)):
        text += f"{int(minute)}分"
    if second and int(second):
        text += f"{int(second)}秒"
    return text


def to_spoken(text: str, language: str = "zh-CN") -> str:
    """Rewrite ``text`` for a Chinese TTS engine: no Arabic digits are left in the result.

    Other languages are returned unchanged.
    """
    if not text or not is_chinese(language):
        return text
    text = _ANY_DIGIT.sub(lambda m: str(unicodedata.decimal(m.group(0))), text)  # ０-９ and other scripts
    text = text.translate(_FULLWIDTH).translate(_SYMBOLS)
    text = _THOUSANDS.sub("", text)

    text = _UNICODE_ROMAN.sub(lambda m: _NUMBER_WORDS[_ROMAN[m.group(0)]], text)
    text = _ASCII_ROMAN_LEVEL.sub(lambda m: _NUMBER_WORDS[_ASCII_ROMAN[m.group(1)]], text)

    for pattern, unit in _PER:
        text = pattern.sub(unit, text)
    for pattern, unit in _BARE_UNITS:
        text = pattern.sub(unit, text)

    text = _DATE.sub(lambda m: f"{m.group(1)}年{int(m.group(2))}月{int(m.group(3))}日", text)
    text = _TIME.sub(_time, text)

    text = _PHONE_CONTEXT.sub(lambda m: m.group(1) + m.group(2) + _phone(m.group(3)), text)
    text = _SERVICE_NUMBERS.sub(lambda m: _phone(m.group(0)), text)
    for pattern in _PHONES:
        text = pattern.sub(lambda m: _phone(m.group(0)), text)
    text = _LONG_DIGITS.sub(lambda m: spell_digits(m.group(0)), text)

    text = _RANGE.sub(r"\1到", text)
    text = _NEGATIVE_TEMPERATURE.sub("零下", text)
    text = _NEGATIVE.sub("负", text)
    text = text.replace("℃", "摄氏度")  # cn2an's own ℃ rule reads 39.5℃ as 三十九.五

    try:
        text = cn2an.transform(text, "an2cn")
    except Exception:  # cn2an rejects some shapes; the digit fallback below still applies
        _log.warning("cn2an could not convert %r; spelling digits one by one", text[:80])
    return _ANY_DIGIT.sub(lambda m: spell_digits(m.group(0)), text)
