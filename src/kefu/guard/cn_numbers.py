"""Reading Chinese numerals: the one implementation the guard rules and the eval metrics share."""

from __future__ import annotations

CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
CN_UNITS = {"十": 10, "百": 100, "千": 1000}


def cn_to_int(run: str) -> int:
    """Value of a Chinese numeral run: 四十八 -> 48, 一百零五 -> 105, 两万 -> 20000, 二〇二六 -> 2026."""
    if len(run) > 1 and all(ch in CN_DIGITS for ch in run):
        return int("".join(str(CN_DIGITS[ch]) for ch in run))  # read digit by digit, like a year or a phone
    total = section = number = 0
    for ch in run:
        if ch in CN_DIGITS:
            number = CN_DIGITS[ch]
        elif ch in CN_UNITS:
            section += (number or (1 if ch == "十" else 0)) * CN_UNITS[ch]
            number = 0
        else:  # 万
            total += (section + number) * 10_000
            section = number = 0
    return total + section + number
