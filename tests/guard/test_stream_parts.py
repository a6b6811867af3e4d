"""The parts the streaming guard is built from: the reasoning filter and the loop check."""

from __future__ import annotations

import random

import pytest

from kefu.guard import repeat
from kefu.guard.think import ThinkFilter


def _through(chunks: list[str], inside: bool = False) -> str:
    f = ThinkFilter(inside)
    return "".join(f.feed(c) for c in chunks) + f.finish()


@pytest.mark.parametrize(
    ("text", "visible"),
    [
        ("<think>内部备注</think>您好", "您好"),
        ("a<thi", "a<thi"),  # a partial tag at the very end is text after all
        ("x</think>y", "xy"),
        ("<think>never closed", ""),
        ("a<b>c<thinking", "a<b>c<thinking"),
        ("<<think>>x</think>y", "<y"),
    ],
)
def test_think_filter_for_every_chunking(text: str, visible: str) -> None:
    rng = random.Random(text)
    for _ in range(100):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, min(6, len(text) - 1))))
        assert _through([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]) == visible


def test_think_filter_reports_where_the_first_cut_was() -> None:
    f = ThinkFilter()
    assert f.feed("您好。<th") == "您好。" and f.first_cut is None
    assert f.feed("ink>x</think>再见") == "再见" and f.first_cut == 3
    assert _through(["先想</think>答"], inside=True) == "答"


def test_runaway_prefilter_agrees_with_the_loop_pattern() -> None:
    rng = random.Random(0)
    alphabet = "您好，谢哈ab c。!"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 100)))
        if rng.random() < 0.4:
            unit = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
            at = rng.randint(0, len(text))
            text = text[:at] + unit * rng.randint(4, 17) + text[at:]
        assert repeat.runaway(text) == (repeat._LOOP.search(text) is not None), text


def test_repeat_watch() -> None:
    watch = repeat.RepeatWatch()
    assert not watch.clause("您好，") and not watch.clause("您好，") and watch.clause("您好，")
    watch.accept("祝您生活愉快！")
    assert watch.sentence_repeats("祝您生活愉快。")  # punctuation does not make it new
    watch.accept("好的。")
    assert not watch.sentence_repeats("好的！")  # a short one may come twice
    watch.accept("好的！")
    assert watch.sentence_repeats("好的。")
    watch.accept("租期 3 天起租，最长 30 天[1]。")
    assert watch.sentence_repeats("租期 3 天起租，最长 30 天[2]。")  # cited again is said again
    assert not watch.sentence_repeats("租期 3 天起租，最长 31 天[1]。")
