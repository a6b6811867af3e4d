"""The action step on its own: argument checks, config validation, the answer texts (the model's own calls:
tests/answer/test_model_calls.py)."""

from __future__ import annotations

import pytest

from kefu.answer.actions import ActionCall, ActionResult, Actions
from kefu.config import KefuConfigError, load_config
from tests.actions.conftest import ACTIONS_YAML


@pytest.fixture
def actions() -> Actions:
    cfg = load_config(ACTIONS_YAML)
    return Actions(cfg.actions, cfg.persona, lambda s: s)


def test_rules_pick_the_first_matching_action(actions: Actions) -> None:
    assert actions.select("DD2026120200003 退货进度") == ActionCall("return_status", {"order_id": "DD2026120200003"})
    assert actions.select("订单 DD2026120200003 到哪了").name == "order_tracking"  # type: ignore[union-attr]
    assert actions.select("到哪了") is None  # no order number: the model asks for it
    assert actions.select("DD2026120200003") is None  # a number alone is not a question


def test_arguments_outside_the_schema_never_reach_the_backend(actions: Actions) -> None:
    bad = ActionCall("order_tracking", {"order_id": "../../admin"}, "model")
    result = actions.run(bad, "C1001")
    assert result.status == "bad_arguments" and result.http_status is None
    assert actions.run(ActionCall("drop_tables", {}, "model"), "C1001").status == "bad_arguments"


def test_failure_answers_speak_the_customers_language(actions: Actions) -> None:
    call = ActionCall("order_tracking", {"order_id": "DD2026120200003"})
    zh = actions.reply(ActionResult(call, "unavailable"), "zh")
    en = actions.reply(ActionResult(call, "not_found"), "en")
    assert zh.startswith("您好") and "人工" in zh
    assert en.startswith("Hello") and "DD2026120200003" in en and not any("\u4e00" <= c <= "\u9fff" for c in en)


def test_unknown_placeholder_is_a_config_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "kefu.yaml"
    path.write_text(ACTIONS_YAML.read_text(encoding="utf-8").replace("{tracking_no}。", "{phone}。"), encoding="utf-8")
    with pytest.raises(KefuConfigError, match=r"actions\.tools\.3.*phone"):
        load_config(path)


def test_every_action_field_is_documented() -> None:
    from kefu.config import ActionConfig

    doc = (ACTIONS_YAML.parents[1] / "docs" / "actions.md").read_text(encoding="utf-8")
    missing = [name for name in ActionConfig.model_fields if f"`{name}`" not in doc]
    assert not missing, f"docs/actions.md lacks {missing}"


def test_confirmation_words() -> None:
    from kefu.answer.confirm import is_confirmation
    from kefu.config import ActionsConfig

    words = ActionsConfig().confirm_words
    yes = ["确认", "确认取消", "好的。", "没问题", "是的", "Yes!", "yes, cancel it", "OK", "确认修改地址"]
    no = ["不确认", "不要", "算了", "no", "Yes, but wait", "确定吗？", "我想问下物流", "先别", ""]
    assert all(is_confirmation(t, words) for t in yes)
    assert not any(is_confirmation(t, words) for t in no)


def test_an_earlier_message_names_the_action_the_number_completes(actions: Actions) -> None:
    call = actions.select("DD2026120200003", before="我要取消订单")
    assert call == ActionCall("cancel_order", {"order_id": "DD2026120200003"})
    assert actions.select("DD2026120200003", before="取消订单 DD2026120100006") is None  # that one was complete
    change = actions.select("订单 DD2026120200003 改地址，改成 杭州市西湖区文三路100号")
    assert change == ActionCall("change_address", {"order_id": "DD2026120200003", "address": "杭州市西湖区文三路100号"})
