"""Evaluation: metrics from scikit-learn, a report a person can read, resume and compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from complaint_motive import InputError, MotiveAnalyzer, evaluate
from complaint_motive.evaluation.metrics import build_report
from complaint_motive.evaluation.models import Prediction
from complaint_motive.surfaces.cli import app


def _dataset(path: Path) -> Path:
    rows = [
        {"id": "1", "text": "我要退款,钱必须退给我", "motive": "compensation",
         "stage": "voiced_grievance"},
        {"id": "2", "text": "建议你们加个夜间客服,希望改进", "motive": "suggestion",
         "stage": "latent_grievance"},
        "this line is not json",
        {"id": "3", "text": "不给赔偿我就发微博曝光", "motive": "leverage",
         "stage": "latent_complaint", "alt_motives": ["compensation"]},
        {"id": "4", "text": "物流到底什么时候到?", "motive": "greed", "stage": "voiced_grievance"},
        {"id": "5", "text": "  ", "motive": "venting", "stage": "voiced_grievance"},
        {"id": "1", "text": "同一个编号又出现了一次", "motive": "venting",
         "stage": "voiced_grievance"},
    ]
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)
                              for r in rows) + "\n", encoding="utf-8")
    return path


def test_report_files_and_stable_keys(offline: MotiveAnalyzer, tmp_path: Path) -> None:
    report = evaluate(_dataset(tmp_path / "set.jsonl"), offline, report_dir=tmp_path / "r")

    # Reported, never silently dropped: bad JSON, an unknown motive, a repeated id.
    assert [p.line for p in report.skipped_lines] == [3, 5, 7]
    assert "duplicate id '1' (first on line 1)" in report.skipped_lines[2].message
    assert report.n == 4 and report.errors == 1  # the blank text is an input error
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    for key in ("n", "errors"):
        assert key in metrics
    for key in ("accuracy", "macro_f1"):
        assert 0 <= metrics["motive"][key] <= 1 and 0 <= metrics["stage"][key] <= 1
    predictions = (tmp_path / "r" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(p)["id"] for p in predictions] == ["1", "2", "3", "5"]
    assert "| motive accuracy |" in (tmp_path / "r" / "report.md").read_text()
    for picture in ("confusion_motive.png", "confusion_stage.png", "calibration.png"):
        assert Image.open(tmp_path / "r" / picture).size[0] > 300


def test_report_plots_leave_the_callers_matplotlib_backend_alone(
        offline: MotiveAnalyzer, tmp_path: Path) -> None:
    import matplotlib

    chosen = matplotlib.get_backend()
    matplotlib.use("svg")  # as a notebook or a script might have chosen
    try:
        evaluate(_dataset(tmp_path / "set.jsonl"), offline, report_dir=tmp_path / "r")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(chosen)
    assert Image.open(tmp_path / "r" / "confusion_motive.png").format == "PNG"


def test_evaluations_in_parallel_threads_each_write_whole_reports(
        offline: MotiveAnalyzer, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    dataset = _dataset(tmp_path / "set.jsonl")
    folders = [tmp_path / f"r{n}" for n in range(3)]
    with ThreadPoolExecutor(3) as pool:
        reports = list(pool.map(lambda f: evaluate(dataset, offline, report_dir=f), folders))
    assert [r.n for r in reports] == [4, 4, 4]
    for folder in folders:
        for picture in ("confusion_motive.png", "confusion_stage.png", "calibration.png"):
            with Image.open(folder / picture) as image:
                image.verify()  # a whole, readable PNG


def test_alt_motives_count_as_correct_and_are_reported() -> None:
    base = {"text": "t", "gold_stage": "complaint", "stage": "complaint", "confidence": 0.9,
            "level": "high", "cited": 1, "evidence_found": True}
    predictions = [
        Prediction(id="a", gold_motive="leverage", alt_motives=["compensation"],
                   motive="compensation", **base),
        Prediction(id="b", gold_motive="venting", motive="venting", **base),
        Prediction(id="c", gold_motive="respect", motive="venting", secondary=["respect"],
                   **base),
        Prediction(id="d", gold_motive="recognition", alt_motives=["respect"],
                   motive="venting", secondary=["respect"], **base),
    ]
    report = build_report(predictions, [], {})
    assert report.counted_via_alt_motives == 1
    assert report.motive.accuracy == pytest.approx(2 / 4)
    assert report.levels["high"].accuracy == pytest.approx(2 / 4)
    # a and d carry alternatives; only d's secondary names one.
    assert report.secondary_hit_rate == pytest.approx(1 / 2)
    # c and d missed; c's gold motive is among its secondaries, d's is not.
    assert report.gold_in_secondary_when_missed == pytest.approx(1 / 2)


def test_needs_risk_flags_and_legitimacy_are_scored_where_annotated() -> None:
    base = {"text": "t", "gold_motive": "venting", "motive": "venting", "gold_stage": None}
    predictions = [
        Prediction(id="a", gold_needs=["emotional", "respect"], needs=["emotional"],
                   gold_risk_flags=["exposure_threat", "abuse"], risk_flags=["abuse"],
                   gold_legitimacy="legitimate", legitimacy="undetermined", **base),
        Prediction(id="b", gold_needs=["factual"], needs=["factual", "emotional"],
                   gold_risk_flags=["exposure_threat"], risk_flags=["exposure_threat"],
                   **base),
        # Not annotated: counts in none of the three.
        Prediction(id="c", needs=["emotional"], risk_flags=["abuse"],
                   legitimacy="legitimate", **base),
    ]
    report = build_report(predictions, [], {})
    # Gold pairs 3, predicted pairs 3, right 2.
    assert (report.needs.n, report.needs.precision, report.needs.recall) == (2, 0.6667, 0.6667)
    assert report.risk_flags.n == 2 and report.risk_flags.recall == pytest.approx(2 / 3, 1e-3)
    assert report.risk_flags.per_flag == {"exposure_threat": 0.5, "abuse": 1.0}
    assert (report.legitimacy.n, report.legitimacy.accuracy) == (1, 0.0)
    assert build_report(predictions[2:], [], {}).needs is None


def test_labels_follow_the_taxonomy_order() -> None:
    base = {"text": "t", "confidence": 0.9, "level": "high"}
    predictions = [
        Prediction(id="1", gold_motive="leverage", motive="venting", gold_stage="complaint",
                   stage="complaint", **base),
        Prediction(id="2", gold_motive="venting", motive="venting",
                   gold_stage="latent_grievance", stage="voiced_grievance", **base),
        Prediction(id="3", gold_motive="compensation", motive="not_a_complaint",
                   gold_stage="latent_complaint", stage="latent_complaint", **base),
    ]
    report = build_report(predictions, [], {})
    # Stages in the order a customer moves through them, so near misses sit by the diagonal.
    assert report.stage.labels == ["latent_grievance", "voiced_grievance", "latent_complaint",
                                   "complaint"]
    assert report.motive.labels == ["venting", "compensation", "leverage", "not_a_complaint"]
    assert report.stage.confusion[0] == [0, 1, 0, 0]


def test_resume_continues_an_interrupted_run(offline: MotiveAnalyzer, tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "set.jsonl")
    folder = tmp_path / "r"
    evaluate(dataset, offline, report_dir=folder, limit=2)
    first = (folder / "predictions.jsonl").read_text().splitlines()
    report = evaluate(dataset, offline, report_dir=folder, resume=True)
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    assert lines[:2] == first and len(lines) == 4
    assert report.run["resumed"] == 2 and report.n == 4


def test_cli_eval_and_compare(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLAINT_MOTIVE_INDEX_DIR", str(settings.index_dir))
    dataset = _dataset(tmp_path / "set.jsonl")
    runner = CliRunner()
    first = runner.invoke(app, ["eval", str(dataset), "--report", str(tmp_path / "a"),
                                "--backend", "offline", "--quiet"])
    assert first.exit_code == 0, first.output
    assert "motive accuracy" in first.stdout
    second = runner.invoke(app, ["eval", str(dataset), "--report", str(tmp_path / "b"),
                                 "--limit", "2", "--quiet", "--compare", str(tmp_path / "a")])
    assert second.exit_code == 0, second.output
    assert "| motive.accuracy |" in second.stdout and "inputs changed prediction" in second.stdout


def test_cli_refuses_missing_files_without_a_traceback(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert missing.exit_code == 1 and "not an evaluation report" in missing.stderr
    no_input = runner.invoke(app, ["analyze", "--input", str(tmp_path / "none.jsonl")])
    assert no_input.exit_code == 2


def test_resume_after_a_run_cut_off_mid_line(offline: MotiveAnalyzer, tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "set.jsonl")
    folder = tmp_path / "r"
    evaluate(dataset, offline, report_dir=folder, limit=3)
    written = (folder / "predictions.jsonl").read_text()
    cut = written[:written.rindex("\n", 0, len(written) - 1) + 40]  # third line half written
    (folder / "predictions.jsonl").write_text(cut)

    report = evaluate(dataset, offline, report_dir=folder, resume=True)
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["1", "2", "3", "5"]
    assert report.n == 4 and report.run["resumed"] == 2


def test_resume_refuses_a_damaged_line_before_the_last(offline: MotiveAnalyzer,
                                                       tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "set.jsonl")
    folder = tmp_path / "r"
    evaluate(dataset, offline, report_dir=folder, limit=2)
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    (folder / "predictions.jsonl").write_text(f"{{oops\n{lines[1]}\n")
    with pytest.raises(InputError, match="line 1 is not a prediction"):
        evaluate(dataset, offline, report_dir=folder, resume=True)


def test_an_in_memory_set_with_repeated_ids_is_refused(offline: MotiveAnalyzer) -> None:
    from complaint_motive.knowledge.exemplars import LabelledComplaint

    items = [LabelledComplaint(id="a", text="退钱", motive="compensation"),
             LabelledComplaint(id="a", text="太慢了", motive="venting")]
    with pytest.raises(InputError, match="repeated: \\['a'\\]"):
        evaluate(items, offline)
