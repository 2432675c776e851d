"""The OpenAI Batch API path against a scripted files + batches endpoint shaped like the
documented API (tests/scripted_batches.py), with the real openai client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from complaint_motive import MotiveAnalyzer
from complaint_motive.runners.batch_api import BatchRun
from loopback_llm import serving
from scripted_batches import ScriptedBatches
from scripted_llm import ScriptedEndpoint, error, good_answer

ITEMS = [{"id": f"t-{i}", "text": f"第{i}单:快递丢了,客服不理人,要求赔偿"} for i in range(10)]


def _number(seen) -> int:
    return int(seen.clauses[1].split("单")[0][1:])


def _analyzer(index_dir, service: ScriptedBatches, **settings) -> MotiveAnalyzer:
    return MotiveAnalyzer.from_settings(index_dir=index_dir, backend="llm",
                                        openai_api_key="sk-test", max_retries=0, **settings,
                                        **service.clients())


def _run(analyzer, state: Path, items=ITEMS, **kwargs):
    return asyncio.run(BatchRun(analyzer, state, poll_interval=0).outcomes(items, **kwargs))


def test_batch_answers_are_validated_and_failures_asked_again_synchronously(
        index_dir, tmp_path) -> None:
    failed_once: set[int] = set()

    def script(body, seen):
        reask = "could not be accepted" in seen.text
        if _number(seen) == 3 and not reask:
            return good_answer(seen, citations=["invented#chunk"])  # invalid: re-asked
        if _number(seen) == 5 and 5 not in failed_once:  # lands in the batch's error file
            failed_once.add(5)
            return error(500, "The server had an error while processing your request.")
        return good_answer(seen)

    service = ScriptedBatches(chat=ScriptedEndpoint(default=script))
    outcomes = _run(_analyzer(index_dir, service), tmp_path / "state.json")

    assert [o.id for o in outcomes] == [i["id"] for i in ITEMS]
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    assert all(o.ok and o.result.meta.backend == "llm" for o in outcomes)
    assert service.uploads == 1 and len(service.batches) == 1
    batch = next(iter(service.batches.values()))
    assert batch["request_counts"] == {"total": 10, "completed": 9, "failed": 1}
    synchronous = service.chat.requests[service.batch_answered:]
    assert len(synchronous) == 2  # the invalid answer re-asked, the failed request asked
    reasked = outcomes[3].result.meta
    assert reasked.attempts == 2 and reasked.usage.input_tokens == 1800  # both counted
    assert "invented#chunk" in synchronous[0].text or "invented#chunk" in synchronous[1].text
    # The request lines are what the synchronous path sends: same model, schema, messages.
    sent = json.loads(service.files["file-1"].splitlines()[0])
    assert sent["url"] == "/v1/chat/completions" and sent["method"] == "POST"
    assert sent["body"]["response_format"]["type"] == "json_schema"
    assert sent["body"]["model"] == "gpt-4o-mini" and "stream" not in sent["body"]


def test_an_expired_batch_keeps_what_it_answered_and_asks_the_rest(index_dir,
                                                                   tmp_path) -> None:
    service = ScriptedBatches(expire_after=4)
    outcomes = _run(_analyzer(index_dir, service), tmp_path / "state.json")
    assert all(o.ok for o in outcomes)
    assert next(iter(service.batches.values()))["status"] == "expired"
    assert service.batch_answered == 4
    assert len(service.chat.requests) - service.batch_answered == 6


def test_a_batch_that_fails_validation_is_answered_synchronously(index_dir, tmp_path) -> None:
    service = ScriptedBatches(refuse={
        "code": "token_limit_exceeded",
        "message": "Enqueued token limit reached for gpt-4o-mini in organization org-x."})
    outcomes = _run(_analyzer(index_dir, service), tmp_path / "state.json")
    assert all(o.ok for o in outcomes)
    assert service.batch_answered == 0 and len(service.chat.requests) == 10
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["status"] == "failed"


def test_an_interrupted_run_resumes_the_same_batch(index_dir, tmp_path) -> None:
    service = ScriptedBatches()
    analyzer = _analyzer(index_dir, service)
    state = tmp_path / "state.json"

    async def interrupted() -> None:
        task = asyncio.ensure_future(BatchRun(analyzer, state, poll_interval=0.05).outcomes(
            ITEMS))
        for _ in range(2000):  # until the batch exists and is being polled
            if service.polls:
                break
            await asyncio.sleep(0.01)
        task.cancel()  # what Ctrl-C does to asyncio.run
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    assert json.loads(state.read_text())["batch_id"] == "batch_1"
    outcomes = _run(analyzer, state)
    assert all(o.ok for o in outcomes)
    assert service.uploads == 1 and len(service.batches) == 1  # not paid for twice
    assert service.batch_answered == 10 and len(service.chat.requests) == 10


def test_bad_input_lines_keep_their_place(index_dir, tmp_path) -> None:
    service = ScriptedBatches()
    items = [ITEMS[0], {"id": "empty", "text": "   "}, ITEMS[1]]
    outcomes = _run(_analyzer(index_dir, service), tmp_path / "state.json", items=items)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].error["kind"] == "input"
    assert service.batch_answered == 2


def test_command_line_analyze_and_eval_through_the_batch_api(index_dir, tmp_path,
                                                             monkeypatch) -> None:
    from typer.testing import CliRunner

    from complaint_motive.surfaces.cli import app
    from loopback_llm import serving

    service = ScriptedBatches(expire_after=3)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in ITEMS[:5]),
                      encoding="utf-8")
    dataset = tmp_path / "gold.jsonl"
    dataset.write_text("".join(json.dumps({**i, "motive": "compensation",
                                           "stage": "voiced_grievance"}, ensure_ascii=False)
                               + "\n" for i in ITEMS[:4]), encoding="utf-8")
    with serving(service.handler) as base_url:
        for name, value in {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-test",
                            "COMPLAINT_MOTIVE_MODEL": "gpt-4o-mini",
                            "COMPLAINT_MOTIVE_INDEX_DIR": str(index_dir)}.items():
            monkeypatch.setenv(name, value)
        analyzed = CliRunner().invoke(app, [
            "analyze", "--input", str(source), "--output", str(tmp_path / "out.jsonl"),
            "--batch-api", "--poll-interval", "0", "--quiet"])
        evaluated = CliRunner().invoke(app, [
            "eval", str(dataset), "--report", str(tmp_path / "report"), "--batch-api",
            "--poll-interval", "0", "--quiet"])

    assert analyzed.exit_code == 0, analyzed.output
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [i["id"] for i in ITEMS[:5]]
    assert all("result" in line for line in lines)
    assert json.loads((tmp_path / "out.jsonl.batch-state.json").read_text())["status"] == \
        "expired"
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["n"] == 4 and metrics["errors"] == 0
    assert (tmp_path / "report" / "batch-state.json").exists()
    assert len(service.batches) == 2 and service.batch_answered == 6  # 3 + 3, rest synchronous


def test_a_batch_run_after_analyze_many_on_one_analyzer_over_keep_alive(index_dir,
                                                                        tmp_path) -> None:
    """analyze_many runs, and closes, its own event loop; the Batch API run that follows on
    the same analyzer must not reach the service through that loop's pooled connections."""
    service = ScriptedBatches()
    with serving(service.handler) as base_url:
        analyzer = MotiveAnalyzer.from_settings(
            index_dir=index_dir, backend="llm", openai_api_key="sk-test", max_retries=0,
            openai_base_url=base_url, model="gpt-4o-mini")
        assert all(o.ok for o in analyzer.analyze_many([i["text"] for i in ITEMS[:2]]))
        outcomes = _run(analyzer, tmp_path / "state.json", items=ITEMS[:3])
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        assert service.uploads == 1 and service.batch_answered == 3
