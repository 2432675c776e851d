"""Helpdesk fit: conversations, actionable confidence, abstention, agent corrections."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from complaint_motive import InputError, MotiveAnalyzer
from complaint_motive.analysis.inputs import parse_transcript
from complaint_motive.knowledge.corrections import import_corrections, read_corrections
from complaint_motive.settings import Settings
from complaint_motive.surfaces.cli import app
from scripted_llm import ScriptedEndpoint

TRANSCRIPT = """[1] 客户: 我上周买的冰箱不制冷了
[2] 客服: 您好,非常抱歉,请问您方便提供订单号吗?
[3] 客户: 订单号给过三遍了!每次都让我重新说
[4] 客服: 我帮您登记一下
[5] 客户: 登记有什么用?我要投诉,冰箱必须换新"""


def test_transcript_turns_are_parsed_by_role() -> None:
    turns = parse_transcript(TRANSCRIPT)
    assert [t.role for t in turns] == ["customer", "agent", "customer", "agent", "customer"]
    assert turns[4].number == 5 and turns[4].text.startswith("登记有什么用")
    assert parse_transcript("这只是一段普通的投诉文字") is None


def test_conversation_uses_the_whole_arc_and_points_quotes_at_turns(
        offline: MotiveAnalyzer) -> None:
    result = offline.analyze(TRANSCRIPT)
    assert result.stage.id == "complaint"  # the customer ended at "我要投诉"
    assert any(e.turn == 5 for e in result.stage.evidence)
    for evidence in result.primary_motive.evidence + result.stage.evidence:
        assert evidence.turn in (1, 3, 5)  # customer turns only


def test_list_of_turns_and_transcript_give_the_same_result(offline: MotiveAnalyzer) -> None:
    turns = [{"role": t.role, "text": t.text} for t in parse_transcript(TRANSCRIPT)]
    a, b = offline.analyze(turns), offline.analyze(TRANSCRIPT)
    assert (a.primary_motive.id, a.stage.id) == (b.primary_motive.id, b.stage.id)


def test_agent_turns_are_context_for_the_model_not_the_customers_words(index_dir) -> None:
    endpoint = ScriptedEndpoint()
    analyzer = MotiveAnalyzer.from_settings(index_dir=index_dir, backend="llm",
                                            openai_api_key="sk", **endpoint.clients())
    analyzer.analyze(TRANSCRIPT)
    seen = endpoint.requests[0]
    assert "我帮您登记一下" not in seen.complaint
    assert "[4] agent: 我帮您登记一下" in seen.text
    assert "登记有什么用" in seen.clauses.values()  # the customer's last turn, numbered


def test_a_conversation_without_customer_turns_is_an_input_error(offline) -> None:
    with pytest.raises(InputError, match="no customer turn"):
        offline.analyze([{"role": "agent", "text": "您好,有什么可以帮您?"}])
    with pytest.raises(InputError, match="unknown conversation role"):
        offline.analyze([{"role": "robot", "text": "beep"}])


def test_levels_map_to_configured_actions(settings: Settings) -> None:
    custom = settings.model_copy(update={"actions": {"high": "auto_apply", "medium":
                                                     "preselect", "low": "suggest"}})
    result = MotiveAnalyzer(custom).analyze("不给我全额退款我就发抖音曝光,我有十万粉丝")
    expected = {"high": "auto_apply", "medium": "preselect", "low": "suggest"}
    assert result.primary_motive.action == expected[result.primary_motive.level]
    assert result.stage.action == expected[result.stage.level]


def test_do_not_say_list_is_always_present(offline: MotiveAnalyzer) -> None:
    avoid = offline.analyze("我要求退款").handling.avoid
    assert any("不要发到网上" in rule for rule in avoid)
    assert any("承诺" in rule for rule in avoid)


def test_a_correction_changes_the_answer_on_a_near_duplicate(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "ix", backend="offline",
                        corrections_file=tmp_path / "corrections.jsonl")
    text = "你们这个会员积分规则到底怎么回事,我上个月的积分去哪了"
    near = "你们这个会员积分规则到底怎么回事?我这个月的积分又去哪了"
    before = MotiveAnalyzer(settings)
    first = before.analyze(text)
    assert first.primary_motive.id != "self_expression"
    for _ in range(3):  # a reviewer confirmed it; three agents recorded the same call
        before.record_correction(first, text=text, motive="self_expression", note="test")
    rows = read_corrections(settings.corrections_file)
    assert rows[0].predicted_motive == first.primary_motive.id and not rows[0].reviewed

    assert import_corrections(settings.corrections_file, settings.local_exemplars) == 0
    assert import_corrections(settings.corrections_file, settings.local_exemplars,
                              include_unreviewed=True) == 1  # deduplicated by text

    after = MotiveAnalyzer(settings)
    reports = after.index.ensure()
    assert reports[1].built and reports[1].embedded == 1  # incremental: only the new one
    assert after.analyze(near).primary_motive.id == "self_expression"
    assert any(n.id.startswith("corr-") for n in after.index.similar_exemplars(near, 1))


def test_correction_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLAINT_MOTIVE_INDEX_DIR", str(tmp_path / "ix"))
    monkeypatch.setenv("COMPLAINT_MOTIVE_CORRECTIONS_FILE", str(tmp_path / "c.jsonl"))
    runner = CliRunner()
    recorded = runner.invoke(app, ["correct", "我的积分去哪了,联系我13812345678",
                                   "--motive", "information", "--reviewed"])
    assert recorded.exit_code == 0, recorded.output
    stored = (tmp_path / "c.jsonl").read_text(encoding="utf-8")
    assert "13812345678" not in stored and "[phone]" in stored
    wrong = runner.invoke(app, ["correct", "我的积分去哪了", "--motive", "greed"])
    assert wrong.exit_code == 1 and "not a taxonomy label" in wrong.stderr
    imported = runner.invoke(app, ["exemplars", "import-corrections"])
    assert imported.exit_code == 0 and "imported 1" in imported.stdout


def test_a_hand_edited_corrections_file_with_a_broken_line_is_a_typed_error(
        offline: MotiveAnalyzer, tmp_path: Path) -> None:
    path = tmp_path / "corrections.jsonl"
    offline.record_correction(offline.analyze("快递丢了,我要赔偿"), text="快递丢了,我要赔偿",
                              motive="compensation", path=path)
    good = path.read_text(encoding="utf-8")
    path.write_text(good.replace('"reviewed":false', '"reviewed":yes') + good, encoding="utf-8")
    with pytest.raises(InputError, match="line 1 is not a correction"):
        import_corrections(path, tmp_path / "local.jsonl")
