"""Cleaning: each drop reason, counted; MinHash near-duplicates found and clustered."""

from __future__ import annotations

import pytest

from kefu.config import CleanConfig
from kefu.data.clean import (
    Cleaner,
    NearDuplicateIndex,
    drop_reason,
    is_garbled,
    is_junk,
    near_duplicate_clusters,
    normalize,
    strip_turns,
)
from kefu.data.schema import Conversation, Preference, Turn

LONG_Q = "请问你们的退货政策是怎样的？我买的衣服尺码不合适想退货，需要自己出运费吗？还有退款多久能到账？"
LONG_A = "您好，签收后7天内商品完好可以无理由退货，非质量问题退货运费由您承担，仓库签收后1-3个工作日原路退款。"


def conv(q: str, a: str, source: str = "s") -> Conversation:
    return Conversation(
        turns=[Turn(role="user", content=q), Turn(role="assistant", content=a)], meta={"source": source}
    )


def test_normalize_strips_width_case_space_and_punctuation() -> None:
    assert normalize("Ｈｅｌｌｏ， 世界！\n OK?") == normalize("hello世界ok") == "hello世界ok"


@pytest.mark.parametrize(
    "text",
    [
        "加微信 abc123 领优惠券",
        "加V：shop_888 有惊喜",
        "微信号：kefu_2024a 专业代购",
        "正品代购，支持验货",
        "兼职刷单日结300",
        "扫码加群领红包",
        "https://a.example.com/x https://b.example.com/y",
        "https://t.example.cn/abcdefg",
        "哈哈哈哈哈哈哈哈哈哈哈哈",
        "好评好评好评好评好评好评好评",
    ],
)
def test_junk(text: str) -> None:
    assert is_junk(text)


@pytest.mark.parametrize(
    "text",
    [
        "可以用微信支付吗？",
        "订单详情见 https://shop.example.com/order 页面，点“申请售后”即可",
        "好的好的，谢谢",
        LONG_A,
    ],
)
def test_not_junk(text: str) -> None:
    assert not is_junk(text)


@pytest.mark.parametrize(
    "text",
    [
        "你好".encode().decode("latin-1") + "，请问",  # UTF-8 read as Latin-1
        "ä½ å¥½ï¼Œè¯·é—®é€€è´§",  # UTF-8 read as cp1252
        "Ã¤Â¸Â­Ã¦â€“â€¡",  # double-encoded
        "锟斤拷锟斤拷",
        "退货\ufffd\ufffd\ufffd政策",
        "\ue001\ue002\ue003价格",
    ],
)
def test_garbled(text: str) -> None:
    assert is_garbled(text)


@pytest.mark.parametrize("text", [LONG_Q, "Café crème, naïve résumé", "满199减20，价格¥179.00", "Ünïcödé is fine"])
def test_not_garbled(text: str) -> None:
    assert not is_garbled(text)


def test_strip_turns_trims_and_drops_trailing_question() -> None:
    c = Conversation(
        turns=[Turn(role="user", content=" q "), Turn(role="assistant", content="a\n"), Turn(role="user", content="x")]
    )
    assert [t.content for t in strip_turns(c).turns] == ["q", "a"]


def test_every_reason_is_counted_once() -> None:
    cfg = CleanConfig(min_chars=4, max_chars=200)
    items = [
        conv(LONG_Q, LONG_A, "a"),  # kept
        conv("退货？", "   ", "a"),  # empty_answer
        conv("价格", "Ã¤Â¸Â­Ã¦â€“â€¡ Ã¤Â¸Â­", "a"),  # garbled
        conv("在吗", "加微信 abc123 领红包", "b"),  # junk
        conv("在吗", "在", "b"),  # too_short
        conv("讲讲", LONG_A * 4, "b"),  # too_long
        conv(LONG_Q + "  ", LONG_A.replace("，", ","), "b"),  # exact_duplicate after normalisation
        conv(LONG_Q.replace("还有", "另外"), LONG_A, "c"),  # near_duplicate
        conv("发票怎么开？", "您好，确认收货后在订单页申请电子发票。", "c"),  # kept
    ]
    cleaner = Cleaner(cfg)
    kept = cleaner.clean(items)
    assert [c.meta["source"] for c in kept] == ["a", "c"]
    assert cleaner.dropped == {
        "empty_answer": 1,
        "garbled": 1,
        "junk": 1,
        "too_short": 1,
        "too_long": 1,
        "exact_duplicate": 1,
        "near_duplicate": 1,
    }
    assert cleaner.dropped_by_source["b"] == {"junk": 1, "too_short": 1, "too_long": 1, "exact_duplicate": 1}


def test_dedup_modes() -> None:
    items = [conv(LONG_Q, LONG_A), conv(LONG_Q, LONG_A), conv(LONG_Q.replace("还有", "另外"), LONG_A)]
    assert len(Cleaner(CleanConfig(dedup="none")).clean(items)) == 3
    assert len(Cleaner(CleanConfig(dedup="exact")).clean(items)) == 2
    assert len(Cleaner(CleanConfig(dedup="near")).clean(items)) == 1


def test_token_limit_uses_the_counter() -> None:
    cfg = CleanConfig(max_tokens=5)
    assert drop_reason(conv("一 二 三", "四 五 六"), cfg, count_tokens=lambda t: len(t.split())) == "too_long"
    assert drop_reason(conv("一 二", "三 四"), cfg, count_tokens=lambda t: len(t.split())) is None
    assert drop_reason(conv("一 二 三", "四 五 六"), cfg, count_tokens=None) is None


def test_preference_reasons() -> None:
    def pref(chosen: str, rejected: str) -> Preference:
        return Preference(prompt=[Turn(role="user", content="能保证明天到吗")], chosen=chosen, rejected=rejected)

    cfg = CleanConfig()
    assert drop_reason(pref("无法保证具体送达日期", "保证明天到！"), cfg) is None
    assert drop_reason(pref("", "保证明天到"), cfg) == "empty_answer"
    assert drop_reason(pref("无法保证。", "无法 保证"), cfg) == "same_answer"
    assert drop_reason(pref("加微信 abc123 催件", "好的"), cfg) == "junk"
    cleaner = Cleaner(cfg)
    assert len(cleaner.clean([pref("无法保证具体送达日期", "保证明天到！")] * 2)) == 1
    assert cleaner.dropped == {"exact_duplicate": 1}


def test_minhash_estimate_tracks_true_jaccard() -> None:
    import numpy as np

    from kefu.data.clean import shingle_hashes

    index = NearDuplicateIndex(0.85, seed=1)
    a = LONG_Q + LONG_A
    for b in (a + "谢谢", a.replace("退货", "换货"), LONG_A + "好的"):
        x, y = set(shingle_hashes(normalize(a)).tolist()), set(shingle_hashes(normalize(b)).tolist())
        true = len(x & y) / len(x | y)
        estimate = float(np.mean(index.signature(a) == index.signature(b)))
        assert abs(estimate - true) < 0.15


def test_near_duplicate_clusters_are_transitive_and_seeded() -> None:
    a = LONG_Q
    b = LONG_Q + "谢谢"
    c = LONG_Q + "谢谢啦"
    d = "我想查一下我的快递到哪里了，订单号是DD20261101001"
    ids = near_duplicate_clusters([a, d, b, c], 0.85, seed=3)
    assert ids[0] == ids[2] == ids[3] != ids[1]
    assert ids == near_duplicate_clusters([a, d, b, c], 0.85, seed=3)
