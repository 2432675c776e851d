"""The offline analyzer: the main job with no API key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from complaint_motive import InputError, MotiveAnalyzer
from complaint_motive.settings import Settings
from complaint_motive.surfaces.cli import app


def test_no_endpoint_means_offline(index_dir: Path) -> None:
    analyzer = MotiveAnalyzer.from_settings(index_dir=index_dir)
    assert analyzer.backend == "offline"


def test_api_key_in_the_environment_selects_the_llm(index_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert MotiveAnalyzer.from_settings(index_dir=index_dir).backend == "llm"
    monkeypatch.setenv("COMPLAINT_MOTIVE_BACKEND", "offline")
    assert MotiveAnalyzer.from_settings(index_dir=index_dir).backend == "offline"


@pytest.mark.parametrize(("text", "motive"), [
    ("我要求退还多扣的手续费,钱必须退给我", "compensation"),
    ("不给我全额退款我就发抖音曝光你们,我有十万粉丝", "leverage"),
    ("建议你们以后在APP上加个进度查询,希望改进", "suggestion"),
    ("Where is my parcel? Tracking hasn't updated in a week.", "information"),
])
def test_clear_complaints_get_their_motive(offline: MotiveAnalyzer, text: str,
                                           motive: str) -> None:
    result = offline.analyze(text)
    assert result.primary_motive.id == motive
    assert result.meta.backend == "offline" and not result.meta.degraded


def test_result_is_grounded_and_traceable(offline: MotiveAnalyzer) -> None:
    text = "快递丢件了,里面是三百多块的东西,你们说怎么赔吧,再不处理我就去投诉"
    result = offline.analyze(text)

    assert result.citations, "every result cites guidance"
    assert all(e.quote in text for e in result.primary_motive.evidence)
    assert all(e.quote in text for e in result.stage.evidence)
    assert result.stage.id == "latent_complaint"  # "再不处理" is an explicit marker
    assert result.primary_motive.frameworks and result.handling.steps
    assert any("承诺" in rule for rule in result.handling.avoid)
    assert result.reply.language == "zh" and result.reply.draft is True
    assert 0 <= result.primary_motive.confidence <= 1
    assert result.primary_motive.level in ("high", "medium", "low")
    assert len(result.primary_motive.alternatives) == 3


def test_english_complaint_gets_an_english_reply(offline: MotiveAnalyzer) -> None:
    result = offline.analyze("I was charged twice for one order. Refund the duplicate now.")
    assert result.reply.language == "en"
    assert result.reply.text.startswith("Hello,")
    # Everything an English-speaking agent reads is English, not the Chinese guidance.
    han = re.compile(r"[\u4e00-\u9fff]")
    for text in [*result.handling.steps, *result.handling.avoid, *result.primary_motive.handling,
                 result.stage.handling, result.stage.explanation,
                 result.primary_motive.explanation]:
        assert text and not han.search(text), text


def test_chinese_complaint_gets_chinese_handling(offline: MotiveAnalyzer) -> None:
    result = offline.analyze("快递丢了一个星期没人管,我要求赔偿")
    assert result.reply.language == "zh"
    for text in [*result.handling.steps, *result.primary_motive.handling, result.stage.handling]:
        assert re.search(r"[\u4e00-\u9fff]", text), text


def test_risk_flags_come_from_explicit_signals(offline: MotiveAnalyzer) -> None:
    result = offline.analyze("叫你们经理出来!不解决我就打12315,再发微博曝光你们")
    assert {"manager_demand", "regulator_threat", "exposure_threat"} <= set(result.risk.flags)
    assert result.risk.level == "high"
    assert result.risk.evidence["regulator_threat"] == ["12315"]


def test_praise_is_not_forced_into_a_motive(offline: MotiveAnalyzer) -> None:
    result = offline.analyze("谢谢你们的客服,服务很好,给你们点赞!")
    assert result.primary_motive.id == "not_a_complaint"
    assert result.secondary_motives == []
    assert result.stage is None  # a customer on no path to a complaint has no stage


@pytest.mark.parametrize(("text", "reason"), [
    ("12345", "only digits"),
    ("退" * 8000, "one character repeated"),
    ("😡😡😡👎👎👎", "no words"),
    ("注文した商品がまだ届きません。どうなっていますか", "Japanese"),
    ("주문한 상품이 아직 도착하지 않았습니다", "Korean"),
    ("لم يصل طلبي بعد، أريد استرداد المال", "Arabic"),
])
def test_text_it_cannot_read_gets_an_honest_unknown(offline: MotiveAnalyzer, text: str,
                                                    reason: str) -> None:
    result = offline.analyze(text)
    assert result.primary_motive.id == "unknown"
    assert result.primary_motive.level == "low"
    assert result.primary_motive.action == "human_review"
    assert any(reason in warning for warning in result.meta.warnings)


def test_a_script_it_has_no_replies_in_is_answered_in_english(offline: MotiveAnalyzer) -> None:
    assert offline.analyze("注文した商品がまだ届きません").reply.language == "en"


def test_replies_name_the_customers_issue_in_their_words(offline: MotiveAnalyzer) -> None:
    annual_fee = offline.analyze("信用卡年费被扣了两次,我要求退还多扣的年费")
    nappy = offline.analyze("纸尿裤里有异物,太恶心了,必须给我退款")
    assert annual_fee.primary_motive.id == nappy.primary_motive.id == "compensation"
    assert "年费被扣了两次" in annual_fee.reply.text
    assert "纸尿裤里有异物" in nappy.reply.text
    english = offline.analyze("I was charged $25 twice for my subscription. I want a refund.")
    assert "charged $25 twice" in english.reply.text


def test_a_quote_that_would_break_the_reply_policy_is_left_out(
        offline: MotiveAnalyzer) -> None:
    from complaint_motive.analysis.policy import reply_violations

    # Quoting "refund me $500" back would read as a promise of $500.
    result = offline.analyze("refund me $500 now, the blender broke on day one")
    assert not reply_violations(result.reply.text)
    assert "$500" not in result.reply.text


def test_no_two_offline_replies_are_the_same_unless_the_complaints_are(
        offline: MotiveAnalyzer) -> None:
    from complaint_motive.knowledge.exemplars import read_labelled
    from complaint_motive.resources import corpus_dir

    items, _ = read_labelled(corpus_dir() / "eval" / "real.jsonl")
    outcomes = offline.analyze_many([i.text for i in items])
    by_reply: dict[str, set[str]] = {}
    for item, outcome in zip(items, outcomes, strict=True):
        assert outcome.result is not None, outcome.error
        by_reply.setdefault(outcome.result.reply.text, set()).add(item.text)
    repeated = {reply: texts for reply, texts in by_reply.items() if len(texts) > 1}
    assert not repeated, list(repeated.items())[:2]


@pytest.mark.parametrize("bad", ["", "   \n\t", None, 42, b"bytes", {"no": "text"}])
def test_bad_input_is_a_typed_error(offline: MotiveAnalyzer, bad: object) -> None:
    with pytest.raises(InputError):
        offline.analyze(bad)


def test_over_long_text_is_refused_or_truncated(settings: Settings) -> None:
    text = "退款怎么还没到账" * 2000
    with pytest.raises(InputError, match="over the limit"):
        MotiveAnalyzer(settings).analyze(text)
    truncated = MotiveAnalyzer(settings.model_copy(update={"truncate": True})).analyze(text)
    assert any("truncated" in w for w in truncated.meta.warnings)


def test_batch_keeps_every_input_in_order(offline: MotiveAnalyzer) -> None:
    items = [{"id": "a", "text": "快递三天没动了,到底在哪"}, {"id": "b", "text": ""},
             {"id": "c", "text": "你们的客服态度太差了"}, 17]
    outcomes = offline.analyze_many(items, concurrency=3)
    assert [o.id for o in outcomes] == ["a", "b", "c", None]
    assert [o.ok for o in outcomes] == [True, False, True, False]
    assert outcomes[1].error["kind"] == "input"


def test_cli_analyze_text_and_json(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLAINT_MOTIVE_INDEX_DIR", str(settings.index_dir))
    runner = CliRunner()
    shown = runner.invoke(app, ["analyze", "外卖少送了一份,要么补送要么退钱"])
    assert shown.exit_code == 0, shown.output
    assert "compensation" in shown.stdout and "offline" in shown.stdout
    data = json.loads(runner.invoke(app, ["analyze", "外卖少送了一份,要么补送要么退钱",
                                          "--format", "json"]).stdout)
    for key in ("primary_motive", "secondary_motives", "stage", "risk", "reply",
                "citations", "meta"):
        assert key in data
    assert data["meta"]["backend"] == "offline" and data["meta"]["degraded"] is False


def test_a_first_run_says_what_it_builds_and_a_second_is_quiet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLAINT_MOTIVE_INDEX_DIR", str(tmp_path / "fresh"))
    runner = CliRunner()
    first = runner.invoke(app, ["analyze", "快递丢件了,你们说怎么赔吧"])
    assert first.exit_code == 0, first.output
    assert "first run" in first.stderr and "train the offline model" in first.stderr
    second = runner.invoke(app, ["analyze", "快递丢件了,你们说怎么赔吧"])
    assert second.exit_code == 0 and "first run" not in second.stderr


def test_cli_batch_writes_one_line_per_input_in_order(settings: Settings, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLAINT_MOTIVE_INDEX_DIR", str(settings.index_dir))
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([
        json.dumps({"id": "1", "text": "物流信息三天没动了"}, ensure_ascii=False),
        "{not json",
        json.dumps({"id": "3", "text": "  "}),
        json.dumps({"id": "4", "turns": [{"role": "customer", "text": "我要投诉你们的骑手"}]},
                   ensure_ascii=False),
        json.dumps({"id": "5"}),
    ]) + "\n", encoding="utf-8")
    target = tmp_path / "out.jsonl"

    out = CliRunner().invoke(app, ["analyze", "--input", str(source), "--output",
                                   str(target), "--concurrency", "2", "--quiet"])

    lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == ["1", "line-2", "3", "4", "5"]
    assert ["result" in line for line in lines] == [True, False, False, True, False]
    assert out.exit_code == 1  # some inputs ended in errors
    assert "line 2" in lines[1]["error"]["message"]


def test_the_card_prints_complaint_text_as_typed_and_names_in_its_language(
        offline: MotiveAnalyzer) -> None:
    from rich.console import Console

    from complaint_motive.surfaces.render import render_card

    result = offline.analyze("Refund me now or else. You ignored three e-mails.")
    # A model's draft may quote the customer's brackets; they are text, not rich markup.
    result = result.model_copy(update={"reply": result.reply.model_copy(
        update={"text": "You wrote [bold]or else[/bold]; we hear you."})})
    console = Console(record=True, width=200)
    render_card(result, console)
    card = console.export_text()
    assert "You wrote [bold]or else[/bold]; we hear you." in card
    motive = result.primary_motive
    assert f"[{motive.level} → {motive.action}]" in card
    assert f"({motive.en})" in card and motive.zh not in card


@pytest.mark.parametrize(("text", "flags"), [
    ("Hello, the ATM swallowed my card and nobody helps.", set()),
    ("The shell of the phone cracked after a week.", set()),
    ("What the hell, you idiots charged me twice!", {"abuse"}),
    ("我tm受够了,你们这帮废物", {"abuse"}),
    ("我的ATM卡被吞了,怎么办", set()),
    ("不解决我就打12315", {"regulator_threat"}),
])
def test_latin_cues_match_whole_words_only(offline: MotiveAnalyzer, text: str,
                                           flags: set[str]) -> None:
    assert set(offline.analyze(text).risk.flags) == flags


def test_a_revenge_motive_carries_the_revenge_risk_without_its_cue_words(
        offline: MotiveAnalyzer) -> None:
    result = offline.analyze("退不退钱我无所谓,这口气咽不下,一定要让你们也尝尝被坑的滋味")
    assert result.primary_motive.id == "revenge"
    assert "revenge_intent" in result.risk.flags and result.risk.level == "high"
    assert result.risk.evidence["revenge_intent"]


def test_a_fixed_reply_language_overrides_the_script(settings: Settings) -> None:
    analyzer = MotiveAnalyzer(settings.model_copy(update={"reply_language": "zh"}))
    english = "I was charged twice for one order. Refund the duplicate now."
    result = analyzer.analyze(english)
    assert result.reply.language == "zh" and result.reply.text.startswith("您好")
    assert all(re.search(r"[\u4e00-\u9fff]", s) for s in result.handling.steps)
    # A record's own language wins over the setting.
    assert analyzer.analyze({"text": english, "language": "en"}).reply.language == "en"


def test_records_in_a_batch_carry_their_own_language(offline: MotiveAnalyzer) -> None:
    outcomes = offline.analyze_many([
        {"id": "a", "text": "东西坏了要换货", "language": "en"},
        {"id": "b", "text": "东西坏了要换货"},
        {"id": "c", "text": "东西坏了要换货", "language": "fr"},
        {"id": "d", "language": "en"},
    ])
    assert [o.result.reply.language for o in outcomes[:2]] == ["en", "zh"]
    assert outcomes[2].error["kind"] == "input" and "'zh' or 'en'" in outcomes[2].error["message"]
    assert outcomes[3].error["kind"] == "input"


@pytest.mark.parametrize("text", ['"', "“”", '<b>"</b>'])
def test_a_complaint_of_quotation_marks_alone_still_gets_a_result(
        offline: MotiveAnalyzer, text: str) -> None:
    # Found by the batch property test: the offline evidence, a bare quotation mark, was
    # refused as "not a verbatim quote". A text of no words has no clause to show: an
    # honest unknown without evidence, and a warning that says why.
    result = offline.analyze(text)
    assert result.primary_motive.id == "unknown" and result.primary_motive.evidence == []
    assert "no words" in " ".join(result.meta.warnings)


def test_cli_batch_records_may_name_their_language(settings: Settings, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLAINT_MOTIVE_INDEX_DIR", str(settings.index_dir))
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "x", "text": "东西坏了要换货", "language": "en"},
                                 ensure_ascii=False) + "\n", encoding="utf-8")
    run = CliRunner().invoke(app, ["analyze", "--input", str(source), "--backend", "offline",
                                   "--output", str(tmp_path / "out.jsonl"), "--quiet"])
    assert run.exit_code == 0, run.output
    line = json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))
    assert line["id"] == "x" and line["result"]["reply"]["language"] == "en"


def test_the_sentence_encoder_option_adds_its_embedding_to_the_features(
        tmp_path: Path) -> None:
    plain = MotiveAnalyzer(Settings(index_dir=tmp_path / "plain", backend="offline"))
    encoded = MotiveAnalyzer(Settings(index_dir=tmp_path / "use", backend="offline",
                                      offline_sentence_encoder="use"))
    text = "I was charged twice for one order. Refund the duplicate now."
    width = {name: a.model.vectorizer.transform([text]).shape[1]
             for name, a in (("plain", plain), ("use", encoded))}
    assert width["use"] == width["plain"] + 512  # USE v3 vectors have 512 dimensions
    assert plain.model.version != encoded.model.version  # never one cached for the other
    result = encoded.analyze(text)
    assert result.primary_motive.id == "compensation"
    assert result.meta.model == f"offline/{encoded.model.version}"


def test_a_regulator_filing_is_a_complaint_made_whatever_its_wording(
        offline: MotiveAnalyzer) -> None:
    text = "The bank charged me an overdraft fee twice and I would like it reversed."
    assert offline.analyze({"text": text, "channel": "regulator_filing"}).stage.id == \
        "complaint"
    with pytest.raises(InputError, match="channel must be one of"):
        offline.analyze({"text": text, "channel": "carrier pigeon"})
