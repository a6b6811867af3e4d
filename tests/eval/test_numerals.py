import pytest

from kefu.eval.numerals import cn_to_int, contains, normalize, numbers_with_units


@pytest.mark.parametrize(
    ("forms", "canonical"),
    [
        (["七天", "7天", "七日", "7日", "seven days", "７天", "7 days", "7-day"], "7天"),
        (["四十八小时", "48小时", "48h", "48 hours", "forty-eight hours", "48个小时", "４８小时"], "48小时"),
        (["九十九元", "99元", "¥99", "￥99", "99块", "99块钱", "¥99.00", "99 yuan"], "99元"),
        (["两个工作日", "2个工作日", "二个工作日", "2 working days", "two business days"], "2工作日"),
        (["1-3个工作日", "1到3个工作日", "1～3个工作日", "1至3个工作日", "一到三个工作日"], "1-3工作日"),
        (["三十分钟", "30分钟", "30 min", "thirty minutes"], "30分钟"),
    ],
)
def test_equivalent_forms_normalise_to_one(forms: list[str], canonical: str) -> None:
    for form in forms:
        assert normalize(form) == canonical, form


@pytest.mark.parametrize(
    ("run", "value"),
    [("七", 7), ("十", 10), ("十五", 15), ("四十八", 48), ("九十九", 99), ("一百零五", 105), ("一百八十", 180),
     ("一千二百", 1200), ("两万", 20000), ("二〇二六", 2026), ("两", 2)],
)  # fmt: skip
def test_cn_to_int(run: str, value: int) -> None:
    assert cn_to_int(run) == value


def test_words_with_numeral_characters_are_not_numbers() -> None:
    for word in ["一定", "万一", "十分感谢", "一下", "千万别", "统一"]:
        assert not any(ch.isdigit() for ch in normalize(word)), word


def test_key_fact_matching_respects_number_boundaries() -> None:
    assert contains("签收后七天内可以申请", "7天")
    assert contains("Returns are accepted within seven days.", "7 days")
    assert not contains("签收后17天内可以申请", "7天")
    assert not contains("可以退7.5天", "5天")
    assert contains("实付满九十九元包邮", "99元")
    assert contains("人工客服每天晚上10点前在线", "22:00")


def test_numbers_with_units() -> None:
    assert numbers_with_units("三十天无理由退货，最多补偿二十元") == [(30.0, "天"), (20.0, "元")]
