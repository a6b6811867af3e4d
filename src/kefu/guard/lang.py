"""The customer's language, read from their message: every notice and replacement answer is written in it."""

from __future__ import annotations

import re
from typing import Literal

Lang = Literal["zh", "en"]

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z\uff21-\uff3a\uff41-\uff5a]")
# English needs clearly more letters than Chinese has characters: "转人工 please" stays Chinese, while an English
# sentence quoting a Chinese word ("Reply 转人工 to reach a human") is English. One Han character carries about as
# much as a short English word (4-5 letters).
_LETTERS_PER_HAN = 4


def detect_lang(text: str) -> Lang:
    """'en' when the message is mostly English letters, else 'zh' (also for empty text, digits or emoji only)."""
    han = len(_HAN.findall(text))
    latin = len(_LATIN.findall(text))
    if latin >= 2 and latin > _LETTERS_PER_HAN * han:
        return "en"
    return "zh"
