import random

import pytest

from kefu.eval.similarity import case_similarity, corpus_similarity, lcs_length, rouge_l, words


def _lcs_dp(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_bit_parallel_lcs_matches_dynamic_programming() -> None:
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 40))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 40))]
        assert lcs_length(a, b) == _lcs_dp(a, b)


def test_rouge_l_known_value() -> None:
    # LCS of 签收后七天 and 签收七天内 is 签收七天 (4): P = 4/5, R = 4/5
    assert rouge_l(list("签收后七天"), list("签收七天内")) == pytest.approx(0.8)


def test_identical_answers_score_full_marks() -> None:
    text = "您好，签收次日起7天内可申请无理由退货。"
    got = case_similarity(text, text, "zh")
    assert got["bleu"] == pytest.approx(100.0)
    assert got["chrf"] == pytest.approx(100.0)
    assert got["rouge_l_char"] == pytest.approx(1.0)
    assert got["rouge_l_word"] == pytest.approx(1.0)


def test_chinese_is_tokenised_not_treated_as_one_word() -> None:
    # With an ASCII tokenizer each unspaced Chinese sentence is one token and partial overlap scores 0 BLEU.
    got = case_similarity("您好，签收后7天内可以申请退货。", "您好，签收次日起7天内可申请无理由退货。", "zh")
    assert 10 < got["bleu"] < 100
    assert 0.5 < got["rouge_l_char"] < 1
    assert 0 < got["rouge_l_word"] < got["rouge_l_char"]
    assert words("七天无理由退货") == ["七天", "无", "理由", "退货"]


def test_corpus_scores_mix_languages() -> None:
    rows = [
        {"answer": a, "reference": r, "lang": lang, "similarity": case_similarity(a, r, lang)}
        for a, r, lang in [
            ("签收次日起7天内可退。", "签收次日起7天内可申请退货。", "zh"),
            ("Returns are accepted within 7 days.", "Returns are accepted within 7 days of delivery.", "en"),
        ]
    ]
    got = corpus_similarity(rows)
    assert got["n"] == 2
    assert 30 < got["bleu"] < 100
    assert got["rouge_l_char"] == pytest.approx(
        (rows[0]["similarity"]["rouge_l_char"] + rows[1]["similarity"]["rouge_l_char"]) / 2
    )
