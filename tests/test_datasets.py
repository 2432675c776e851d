"""Analysts' own datasets: any columns, CSV / Parquet / DataFrames, slices, intervals,
agreement, and batch files that never lose paid work."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from complaint_motive import FieldMap, MotiveAnalyzer, evaluate
from complaint_motive.evaluation.compare import compare_predictions
from complaint_motive.evaluation.metrics import (
    build_report,
    paired_cells,
    resampled_confusions,
    scores_of,
)
from complaint_motive.evaluation.models import Prediction
from complaint_motive.readers import read_rows
from complaint_motive.surfaces.cli import RESULT_COLUMNS, app

ROWS = [
    {"id": "a", "text": "我要退款,钱必须退给我", "motive": "compensation",
     "stage": "voiced_grievance", "source": "app", "channel": "chat", "product": "card"},
    {"id": "b", "text": "建议你们加个夜间客服,希望改进", "motive": "suggestion",
     "stage": "latent_grievance", "source": "web", "channel": "email", "product": "loan"},
    {"id": "c", "text": "The refund never arrived, I want my money back now", "motive":
     "compensation", "stage": "voiced_grievance", "source": "app", "channel": "chat",
     "product": "card"},
    {"id": "d", "text": "物流到底什么时候到?查了三天都没有更新", "motive": "information",
     "stage": "voiced_grievance", "source": "web", "channel": "phone", "product": "loan"},
]


@pytest.fixture
def cli_env(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLAINT_MOTIVE_INDEX_DIR", str(settings.index_dir))
    monkeypatch.setenv("COMPLAINT_MOTIVE_BACKEND", "offline")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    package = logging.getLogger("complaint_motive")
    saved = (package.handlers[:], package.level, package.propagate)
    yield
    package.handlers, package.level, package.propagate = saved[0], saved[1], saved[2]


def _jsonl(path: Path, rows: list, raw: bytes = b"") -> Path:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" if isinstance(r, dict) else r
                   for r in rows).encode("utf-8")
    path.write_bytes(data + raw)
    return path


def _csv(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


# -- extra columns, field mapping, the terminal summary ---------------------------------

def test_extra_columns_are_kept_under_their_own_key_never_a_reason_to_skip(
        offline: MotiveAnalyzer, tmp_path: Path) -> None:
    # "motive_note" would shadow nothing of ours; a column named like one of our prediction
    # fields ("confidence") must not overwrite the model's confidence either.
    rows = [dict(r, confidence="annotator-sure", nested={"k": [1, 2]}) for r in ROWS]
    report = evaluate(_jsonl(tmp_path / "set.jsonl", rows), offline,
                      report_dir=tmp_path / "r")
    assert report.skipped_lines == [] and report.n == 4 and report.scored == 4
    predictions = [json.loads(line) for line in
                   (tmp_path / "r" / "predictions.jsonl").read_text().splitlines()]
    assert predictions[0]["extra"] == {"source": "app", "channel": "chat", "product": "card",
                                       "confidence": "annotator-sure",
                                       "nested": {"k": [1, 2]}}
    assert all(isinstance(p["confidence"], float) for p in predictions)
    assert report.summary().startswith("read 4 rows: 0 skipped, 4 analysed, 4 scored")


def test_field_names_can_be_mapped_and_a_missing_id_is_named_after_its_line(
        offline: MotiveAnalyzer, tmp_path: Path) -> None:
    renamed = [{"body": r["text"], "label": r["motive"], "phase": r["stage"],
                "channel": r["channel"]} for r in ROWS]
    path = _csv(tmp_path / "export.csv", renamed)
    report = evaluate(path, offline, fields=FieldMap(text="body", motive="label",
                                                     stage="phase"), by=["channel"])
    assert report.scored == 4 and report.stage is not None
    assert set(report.slices["channel"]) == {"chat", "email", "phone"}
    unmapped = evaluate(path, offline)  # without the map, every row names what it lacks
    assert unmapped.n == 0 and len(unmapped.skipped_lines) == 4
    assert unmapped.skipped_lines[0].line == 2  # the header is line 1
    assert "text: Field required" in unmapped.skipped_lines[0].message

    from complaint_motive.evaluation.run import plan_evaluation

    plan = plan_evaluation(path, fields=FieldMap(text="body", motive="label"))
    assert [row.item.id for row in plan.rows] == ["line-2", "line-3", "line-4", "line-5"]


def test_cli_summary_counts_and_a_run_that_scores_nothing_fails(cli_env, tmp_path: Path) -> None:
    runner = CliRunner()
    mixed = _jsonl(tmp_path / "mixed.jsonl", [ROWS[0], "not json\n", ROWS[1],
                                              dict(ROWS[2], motive="greed")])
    run = runner.invoke(app, ["eval", str(mixed), "--report", str(tmp_path / "m"), "--quiet"])
    assert run.exit_code == 0, run.output
    assert "read 4 rows: 2 skipped, 2 analysed, 2 scored, 0 errors" in run.stdout
    assert "skipped line 2: line 2: not JSON" in run.stdout
    assert "skipped line 4: motive: Input should be" in run.stdout

    nothing = _jsonl(tmp_path / "bad.jsonl", [dict(r, motive="greed") for r in ROWS])
    failed = runner.invoke(app, ["eval", str(nothing), "--report", str(tmp_path / "n"),
                                 "--quiet", "--text-field", "text"])
    assert failed.exit_code == 1
    assert "read 4 rows: 4 skipped, 0 analysed, 0 scored" in failed.stdout
    assert "nothing was scored: every row was skipped (first: line 1: motive:" in failed.stderr


# -- slices, intervals, comparison, agreement -------------------------------------------

def _predictions(n: int, wrong_every: int, *, lang: str = "zh") -> list[Prediction]:
    motives = ["venting", "compensation", "information", "respect"]
    out = []
    for i in range(n):
        gold = motives[i % 4]
        predicted = motives[(i + 1) % 4] if wrong_every and i % wrong_every == 0 else gold
        out.append(Prediction(id=str(i), text="t", lang=lang, gold_motive=gold,
                              gold_stage="complaint", motive=predicted, stage="complaint",
                              extra={"channel": "chat" if i % 2 else "email"}))
    return out


def test_slices_give_every_headline_metric_per_value_with_lang_detected(
        offline: MotiveAnalyzer, tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "source"} for r in ROWS]
    rows[1]["lang"] = "zh-TW"  # a set's own lang wins over detection, even one of its own
    report = evaluate(_jsonl(tmp_path / "set.jsonl", rows), offline, by=["lang", "product"])
    assert report.skipped_lines == []
    assert report.slices["lang"].keys() == {"zh", "en", "zh-TW"}
    assert report.slices["lang"]["en"].n == 1
    assert sum(h.n for h in report.slices["product"].values()) == 4
    card = report.slices["product"]["card"]
    assert card.motive_accuracy is not None and card.motive_accuracy_ci is not None
    assert card.stage_macro_f1 is not None
    metrics = json.loads(report.model_dump_json())
    assert metrics["slices"]["product"]["loan"]["n"] == 2


def test_bootstrap_intervals_bracket_the_estimate_and_match_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, f1_score

    predictions = _predictions(200, 5)
    report = build_report(predictions, [], {})
    low, high = report.motive.accuracy_ci
    assert low < report.motive.accuracy < high and high - low < 0.2
    low, high = report.motive.macro_f1_ci
    assert low < report.motive.macro_f1 < high
    assert build_report(predictions, [], {}).motive == report.motive  # seeded: repeatable
    # A resample is a multinomial draw over the distinct (gold, predicted) cells; scored from
    # its confusion matrix, it equals scikit-learn on the items it stands for.
    from sklearn.metrics import confusion_matrix

    gold = [p.gold_motive for p in predictions]
    predicted = [p.motive or "" for p in predictions]
    confusions = resampled_confusions([paired_cells(gold, predicted)], resamples=5)[0]
    labels = sorted(set(gold) | set(predicted))
    accuracies, f1s = scores_of(confusions)
    for matrix, accuracy, macro_f1 in zip(confusions, accuracies, f1s, strict=True):
        assert matrix.sum() == 200
        g = [labels[i] for i in range(len(labels)) for j in range(len(labels))
             for _ in range(int(matrix[i, j]))]
        p = [labels[j] for i in range(len(labels)) for j in range(len(labels))
             for _ in range(int(matrix[i, j]))]
        assert confusion_matrix(g, p, labels=labels).tolist() == matrix.astype(int).tolist()
        assert accuracy == pytest.approx(accuracy_score(g, p))
        assert macro_f1 == pytest.approx(f1_score(g, p, labels=sorted(set(g)),
                                                  average="macro", zero_division=0))
    assert len({tuple(m.ravel()) for m in confusions}) > 1  # five different draws


def test_compare_marks_only_the_deltas_outside_the_noise(tmp_path: Path) -> None:
    before = _predictions(300, 3)    # a third wrong
    after = _predictions(300, 30)    # a thirtieth wrong: a real gain
    noisy = _predictions(300, 3)
    noisy[0] = noisy[0].model_copy(update={"motive": noisy[0].gold_motive})  # one item fixed
    old = (json.loads(build_report(before, [], {}).model_dump_json()), before)

    def run(rows: list[Prediction]):
        return compare_predictions(tmp_path / "before", old,
                                   (json.loads(build_report(rows, [], {}).model_dump_json()),
                                    rows), after_name="after")

    gain = {d.metric: d for d in run(after).deltas}
    assert gain["motive.accuracy"].outside_noise is True
    assert gain["motive.accuracy"].ci[0] > 0 and gain["motive.macro_f1"].outside_noise
    same = {d.metric: d for d in run(noisy).deltas}
    assert same["motive.accuracy"].outside_noise is False
    assert same["motive.accuracy"].delta == pytest.approx(1 / 300, abs=1e-4)
    assert same["n"].ci is None and run(noisy).paired_n == 300


def test_kappa_between_annotators_and_each_annotator_and_the_model() -> None:
    predictions = _predictions(40, 0)  # the model agrees with the gold everywhere
    for i, p in enumerate(predictions):
        p.extra["second"] = p.gold_motive if i % 3 else "information"
    report = build_report(predictions, [], {}, second_annotator="second")
    agreement = report.agreement
    assert agreement.n == 40 and agreement.first_vs_model == 1.0
    assert 0 < agreement.between_annotators < 1
    assert agreement.second_vs_model == agreement.between_annotators


def test_cli_by_second_annotator_and_unknown_columns_are_checked_first(
        cli_env, tmp_path: Path) -> None:
    rows = [dict(r, second=r["motive"]) for r in ROWS]
    path = _jsonl(tmp_path / "set.jsonl", rows)
    runner = CliRunner()
    run = runner.invoke(app, ["eval", str(path), "--report", str(tmp_path / "r"), "--quiet",
                              "--by", "channel", "--by", "lang", "--second-annotator",
                              "second"])
    assert run.exit_code == 0, run.output
    assert "by channel: chat n=2" in run.stdout and "kappa (n=" in run.stdout
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["agreement"]["between_annotators"] == 1.0
    assert set(metrics["slices"]) == {"channel", "lang"}
    unknown = runner.invoke(app, ["eval", str(path), "--report", str(tmp_path / "u"),
                                  "--by", "region"])
    assert unknown.exit_code == 2 and "no row has a 'region' column" in unknown.stderr
    assert not (tmp_path / "u").exists()  # refused before any work


# -- readers: CSV encodings, Parquet, DataFrames, iterables -----------------------------

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_in_the_encodings_spreadsheets_export_reads_the_same(
        tmp_path: Path, encoding: str) -> None:
    path = _csv(tmp_path / f"{encoding}.csv", ROWS, encoding)
    rows = list(read_rows(path))
    assert [r.record for r in rows] == ROWS and [r.line for r in rows] == [2, 3, 4, 5]


def test_csv_encoding_can_be_given_and_an_undecodable_row_is_that_rows_problem(
        tmp_path: Path) -> None:
    path = _csv(tmp_path / "latin.csv", [{"id": "1", "text": "café crème"}], "latin-1")
    assert next(read_rows(path, encoding="latin-1")).record == {"id": "1",
                                                                "text": "café crème"}
    data = "id,text\n1,好的\n2,坏\n3,\"多行\n文本\"\n4,也好\n".encode()
    broken = data.replace("坏".encode(), b"\xff\xfe")
    (tmp_path / "broken.csv").write_bytes(broken)
    rows = list(read_rows(tmp_path / "broken.csv", encoding="utf-8"))
    assert [r.line for r in rows] == [2, 3, 4, 6]  # a record's first line
    assert rows[1].problem and "not utf-8 text" in rows[1].problem
    assert rows[2].record == {"id": "3", "text": "多行\n文本"}


def test_parquet_dataframes_and_iterables_feed_the_same_evaluation(
        offline: MotiveAnalyzer, tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(ROWS)
    frame["when"] = pd.Timestamp("2025-01-02")
    frame.loc[1, "product"] = None
    frame.to_parquet(tmp_path / "set.parquet")
    from_frame = evaluate(frame, offline, by=["product"])
    from_parquet = evaluate(tmp_path / "set.parquet", offline)
    from_dicts = evaluate(iter(ROWS), offline)
    assert from_frame.motive.accuracy == from_parquet.motive.accuracy \
        == from_dicts.motive.accuracy
    assert from_frame.scored == from_parquet.scored == 4
    assert "(missing)" in from_frame.slices["product"]
    rows = list(read_rows(tmp_path / "set.parquet"))
    assert rows[0].line == 1 and rows[0].record["when"].startswith("2025-01-02")


# -- batch files that never lose paid work -----------------------------------------------

def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_batch_keeps_every_row_blank_and_undecodable_ones_included(
        cli_env, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    _jsonl(source, [{"id": "1", "text": "东西坏了要换货"}, "\n",
                    {"id": "2", "text": "建议延长营业时间"}, {"id": "1", "text": "重复的编号"}],
           raw=b'{"id": "3", "text": "\xff\xfe"}\n'
           + '{"id": "4", "text": "退款"}\n'.encode())
    out = tmp_path / "out.jsonl"
    run = CliRunner().invoke(app, ["analyze", "--input", str(source), "--output", str(out)])
    assert run.exit_code == 1  # some lines are errors
    lines = _lines(out)
    assert [line["line"] for line in lines] == [1, 2, 3, 4, 5, 6]  # one per input line
    assert [("result" in line) for line in lines] == [True, False, True, False, False, True]
    assert "blank line" in lines[1]["error"]["message"]
    assert "repeated id '1' (first on line 1)" in lines[3]["error"]["message"]
    assert "not utf-8 text (byte 0xff" in lines[4]["error"]["message"]


def test_batch_honours_a_rows_channel_and_carries_its_other_columns(
        cli_env, tmp_path: Path) -> None:
    text = "东西坏了要换货,客服一直不回"
    source = _jsonl(tmp_path / "in.jsonl", [
        {"id": "plain", "text": text, "queue": "售后", "date": "2026-11-02"},
        {"id": "posted", "text": text, "channel": "complaint_platform"}])
    runner = CliRunner()
    out = tmp_path / "out.jsonl"
    assert runner.invoke(app, ["analyze", "-i", str(source), "-o", str(out)]).exit_code == 0
    plain, posted = _lines(out)
    # Posting on a complaint platform is the formal complaint, as the Python API says.
    assert plain["result"]["stage"]["id"] != "complaint"
    assert posted["result"]["stage"]["id"] == "complaint"
    assert plain["extra"] == {"queue": "售后", "date": "2026-11-02"} and "extra" not in posted

    table = tmp_path / "out.csv"
    assert runner.invoke(app, ["analyze", "-i", str(source), "-o", str(table)]).exit_code == 0
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert json.loads(rows[0]["extra"]) == {"queue": "售后", "date": "2026-11-02"}
    assert rows[1]["extra"] == ""


def test_batch_output_is_never_truncated_and_resume_continues_it(
        cli_env, tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "in.jsonl", [{"id": str(n), "text": f"第{n}次催退款了,还没到账"}
                                            for n in range(12)])
    out = tmp_path / "out.jsonl"
    runner = CliRunner()
    assert runner.invoke(app, ["analyze", "-i", str(source), "-o", str(out)]).exit_code == 0
    full = out.read_text(encoding="utf-8")
    cut = full[:full.index("\n", full.index("\n") * 4) + 30]  # five lines and a half
    out.write_text(cut, encoding="utf-8")

    again = runner.invoke(app, ["analyze", "-i", str(source), "-o", str(out)])
    assert again.exit_code == 2 and "--resume to continue it, --overwrite" in again.stderr
    assert out.read_text(encoding="utf-8") == cut  # untouched

    resumed = runner.invoke(app, ["analyze", "-i", str(source), "-o", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    lines = _lines(out)
    assert [line["id"] for line in lines] == [str(n) for n in range(12)]
    assert out.read_text(encoding="utf-8").startswith(cut[:cut.rindex("\n") + 1])
    other = _jsonl(tmp_path / "other.jsonl", [{"id": "x", "text": "别的文件"}] * 1)
    refused = runner.invoke(app, ["analyze", "-i", str(other), "-o", str(out), "--resume"])
    assert refused.exit_code == 2 and "holds results for other inputs" in refused.stderr
    replaced = runner.invoke(app, ["analyze", "-i", str(other), "-o", str(out), "--overwrite"])
    assert replaced.exit_code == 0 and [line["id"] for line in _lines(out)] == ["x"]


def test_batch_refuses_bad_outputs_before_any_work(cli_env, tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "in.jsonl", [{"id": "1", "text": "退钱"}])
    runner = CliRunner()
    same = runner.invoke(app, ["analyze", "-i", str(source), "-o", str(source), "--overwrite"])
    assert same.exit_code == 2 and "is the --input file" in same.stderr
    assert _lines(source) == [{"id": "1", "text": "退钱"}]
    missing = runner.invoke(app, ["analyze", "-i", str(source), "-o",
                                  str(tmp_path / "nope" / "out.jsonl")])
    assert missing.exit_code == 2 and "does not exist: create it first" in missing.stderr


def test_batch_reads_csv_and_writes_csv_and_parquet_with_the_stable_keys(
        cli_env, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    source = _csv(tmp_path / "in.csv", [{"ticket": "t1", "body": "快递丢了,你们说怎么赔吧"},
                                        {"ticket": "t2", "body": ""},
                                        {"ticket": "t3", "body": "网银转账失败但钱扣了"}], "gbk")
    runner = CliRunner()
    for name in ("out.csv", "out.parquet"):
        run = runner.invoke(app, ["analyze", "-i", str(source), "-o", str(tmp_path / name),
                                  "--text-field", "body", "--id-field", "ticket"])
        assert run.exit_code == 1, run.output  # t2 has no text
    rows = list(csv.DictReader((tmp_path / "out.csv").open(encoding="utf-8")))
    assert list(rows[0]) == list(RESULT_COLUMNS)
    assert [r["id"] for r in rows] == ["t1", "t2", "t3"]
    assert rows[0]["primary_motive.id"] == "compensation" and rows[1]["error.kind"] == "input"
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [r["id"] for r in table] == ["t1", "t2", "t3"]
    assert table[0]["citations"] and isinstance(table[0]["primary_motive.confidence"], float)
    assert not (tmp_path / "out.parquet.partial.jsonl").exists()


def test_clear_errors_for_a_malformed_toml_and_undecodable_stdin(
        cli_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    (tmp_path / "complaint-motive.toml").write_text("model = [unclosed\n", encoding="utf-8")
    config = runner.invoke(app, ["config"])
    assert config.exit_code == 3 and "not valid TOML" in config.stderr
    assert "Traceback" not in config.output
    (tmp_path / "complaint-motive.toml").unlink()
    stdin = runner.invoke(app, ["analyze", "-"], input=b"\xff\xfe\xfa complaint")
    assert stdin.exit_code == 1 and "standard input is not UTF-8 text" in stdin.stderr


# -- arguments checked before work, logs -------------------------------------------------

def test_eval_refuses_a_compare_without_a_report_and_a_resume_that_cannot_resume(
        cli_env, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "set.jsonl", ROWS)
    runner = CliRunner()
    compare = runner.invoke(app, ["eval", str(path), "--report", str(tmp_path / "r"),
                                  "--compare", str(tmp_path / "nothing")])
    assert compare.exit_code == 2 and "not an evaluation report" in compare.stderr
    assert not (tmp_path / "r").exists()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "predictions.jsonl").write_text('{"id": "zz", "text": "t", '
                                                      '"gold_motive": "venting", '
                                                      '"gold_stage": null}\n')
    other_run = runner.invoke(app, ["eval", str(path), "--report", str(tmp_path / "r"),
                                    "--resume"])
    assert other_run.exit_code == 2 and "holds ids this set does not have" in other_run.stderr
    (tmp_path / "r" / "predictions.jsonl").write_text("{oops\n{also bad\n")
    damaged = runner.invoke(app, ["eval", str(path), "--report", str(tmp_path / "r"),
                                  "--resume"])
    assert damaged.exit_code == 2 and "line 1 is not a prediction" in damaged.stderr


def test_verbose_turns_on_structured_logs_without_the_text(cli_env, restore_logging,
                                                           tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "set.jsonl", ROWS[:2])
    run = CliRunner().invoke(app, ["eval", str(path), "--report", str(tmp_path / "r"),
                                   "--quiet", "-v"])
    assert run.exit_code == 0, run.output
    logged = [line for line in run.stderr.splitlines() if "analysed" in line]
    assert len(logged) == 2 and 'motive="compensation"' in logged[0]
    assert "退款" not in run.stderr
    quiet = CliRunner().invoke(app, ["config", "--log-level", "loud"])
    assert quiet.exit_code == 2


# -- the report a person opens ----------------------------------------------------------

_PROBE = """<script>addEventListener('load', () => {
  const images = [...document.images];
  document.body.setAttribute('data-probe', JSON.stringify({
    images: images.map(i => [i.alt, i.complete && i.naturalWidth > 0, i.naturalWidth]),
    headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
    tables: document.querySelectorAll('table').length}));
});</script>"""


def _chromium() -> str:
    import os
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("CI needs Chromium for the report test: `make browser` installs it")
    pytest.skip("no Chromium (`make browser` installs it)")


def test_report_html_is_one_file_a_real_browser_shows_with_its_plots(
        offline: MotiveAnalyzer, tmp_path: Path) -> None:
    import html
    import re
    import subprocess

    chromium = _chromium()
    rows = [dict(r, second=r["motive"]) for r in ROWS]
    path = _jsonl(tmp_path / "set.jsonl", rows + ["not json\n"])
    evaluate(path, offline, report_dir=tmp_path / "before")
    evaluate(path, offline, report_dir=tmp_path / "r", by=["channel"],
             second_annotator="second", compare=tmp_path / "before")
    page = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "src=\"http" not in page and "<link" not in page  # nothing fetched
    probe = tmp_path / "probe.html"  # the report, elsewhere (no PNG beside it), plus a probe
    probe.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    seen = json.loads(html.unescape(re.search(r'data-probe="([^"]*)"', dom)[1]))
    assert [(alt, shown) for alt, shown, _ in seen["images"]] == [
        ("confusion_motive.png", True), ("confusion_stage.png", True),
        ("calibration.png", True)]
    assert all(width >= 300 for _, _, width in seen["images"])
    assert {"Headline", "Compared with before", "By channel", "Agreement (Cohen's kappa)",
            "Plots", "Skipped lines (1)"} <= set(seen["headings"])
    assert seen["tables"] >= 6
