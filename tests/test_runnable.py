"""The analyzer as a LangChain Runnable: traced runs, batches over the batch runner, a real
input schema, streams; and one steering rule shared by analyze, search and the retriever."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

import httpx
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableLambda
from typer.testing import CliRunner

from complaint_motive.analysis.batch_runner import Rejected
from complaint_motive.analysis.schema import MotiveAnalysis
from complaint_motive.analysis.types import Backend
from complaint_motive.analyzer import MotiveAnalyzer
from complaint_motive.errors import BackendError, InputError
from complaint_motive.settings import Settings
from complaint_motive.surfaces.cli import app
from complaint_motive.surfaces.retriever import GuidanceRetriever
from scripted_llm import ScriptedEndpoint, answer, error, good_answer

COMPLAINT = "网银转账失败但钱扣了,手续费也扣了,我要求全额退回!电话13812345678"


class Runs(BaseCallbackHandler):
    """Every run the callbacks see: name, parent, what it was given, how it ended."""

    def __init__(self) -> None:
        self.runs: dict[UUID, dict[str, Any]] = {}

    def _start(self, run_id: UUID, parent: UUID | None, name: str, inputs: Any) -> None:
        self.runs[run_id] = {"name": name, "parent": parent, "inputs": inputs, "end": None}

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._start(run_id, parent_run_id, kwargs.get("name") or "chain", inputs)

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID,
                            parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._start(run_id, parent_run_id, "chat_model", messages)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs[run_id]["end"] = "ok"

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs[run_id]["end"] = "ok"

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs[run_id]["end"] = type(error).__name__

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.runs[run_id]["end"] = type(error).__name__

    def named(self, name: str) -> list[dict[str, Any]]:
        return [run for run in self.runs.values() if run["name"] == name]

    def ancestors(self, run: dict[str, Any]) -> list[str]:
        names = []
        while run["parent"] is not None:
            run = self.runs[run["parent"]]
            names.append(run["name"])
        return names


def test_invoke_opens_a_run_the_model_calls_and_re_asks_sit_under(llm_analyzer,
                                                                   endpoint) -> None:
    endpoint.steps = [answer(citations=["invented#chunk"])]  # re-asked once
    runs = Runs()
    result = llm_analyzer.invoke(COMPLAINT, config={"callbacks": [runs]})
    assert result.meta.attempts == 2
    [root] = runs.named("MotiveAnalyzer")
    assert root["parent"] is None and root["end"] == "ok"
    assert "13812345678" not in json.dumps(root["inputs"], ensure_ascii=False)
    [first], [again] = runs.named("answer"), runs.named("re-ask")
    assert runs.ancestors(first) == runs.ancestors(again) == ["MotiveAnalyzer"]
    models = runs.named("chat_model")
    assert len(models) == 2 and all("MotiveAnalyzer" in runs.ancestors(m) for m in models)


def test_a_fallback_is_a_run_of_its_own_under_the_analyzer(llm_analyzer, endpoint) -> None:
    endpoint.default = lambda body, seen: error(503)
    runs = Runs()
    result = asyncio.run(llm_analyzer.ainvoke(COMPLAINT, config={"callbacks": [runs]},
                                              fallback="offline"))
    assert result.meta.degraded and result.meta.backend == "offline"
    [fallback] = runs.named("fallback:offline")
    assert runs.ancestors(fallback) == ["MotiveAnalyzer"] and fallback["end"] == "ok"
    assert fallback["inputs"] == {"reason": "backend"}
    assert all(run["end"] != "ok" for run in runs.named("answer"))


def test_a_failed_invoke_ends_its_run_in_the_typed_error(llm_analyzer, endpoint) -> None:
    endpoint.default = lambda body, seen: error(503)
    runs = Runs()
    with pytest.raises(BackendError):
        llm_analyzer.invoke(COMPLAINT, config={"callbacks": [runs]})
    assert runs.named("MotiveAnalyzer")[0]["end"] == "BackendError"


def test_batch_returns_typed_errors_in_place_and_raises_without_return_exceptions(
        offline: MotiveAnalyzer) -> None:
    inputs = ["快递丢了,你们说怎么赔吧", "", "退款半个月没到账"]
    results = offline.batch(inputs, return_exceptions=True)
    assert isinstance(results[0], MotiveAnalysis) and isinstance(results[2], MotiveAnalysis)
    assert isinstance(results[1], InputError)
    assert results[0] == offline.analyze(inputs[0]).model_copy(
        update={"meta": results[0].meta})
    with pytest.raises(InputError):
        offline.batch(inputs)


def test_abatch_honours_max_concurrency_and_gives_each_input_its_run(index_dir) -> None:
    in_flight = most = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return endpoint._respond(request)

    endpoint = ScriptedEndpoint()
    analyzer = MotiveAnalyzer.from_settings(
        index_dir=index_dir, backend="llm", openai_api_key="sk-test", model="gpt-4o-mini",
        http_client=httpx.Client(transport=httpx.MockTransport(endpoint.handler)),
        http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(slow)))
    runs = Runs()
    texts = [f"第{n}次催退款了,钱还没到账,我要求退款" for n in range(9)]
    results = asyncio.run(analyzer.abatch(texts, {"max_concurrency": 3,
                                                  "callbacks": [runs]}))
    assert [r.meta.backend for r in results] == ["llm"] * 9
    assert most == 3
    roots = runs.named("MotiveAnalyzer")
    assert len(roots) == 9 and all(r["parent"] is None and r["end"] == "ok" for r in roots)


def test_rejected_inputs_keep_their_place_in_a_batch(offline: MotiveAnalyzer) -> None:
    outcomes = offline.analyze_many([
        {"id": "a", "text": "快递丢了要赔偿"},
        Rejected(InputError("line 2: not JSON"), "line-2"),
        {"id": "c", "text": "服务太差"}])
    assert [o.id for o in outcomes] == ["a", "line-2", "c"]
    assert outcomes[1].error is not None and outcomes[1].error["kind"] == "input"
    assert outcomes[1].error["message"] == "line 2: not JSON"
    assert outcomes[0].ok and outcomes[2].ok


def test_input_schema_describes_what_the_analyzer_takes(offline: MotiveAnalyzer) -> None:
    schema = offline.input_schema
    for accepted in ["退款没到账", [{"role": "customer", "text": "退款没到账"}],
                     {"id": "t-1", "text": "退款没到账", "language": "zh",
                      "channel": "review"}]:
        schema.model_validate(accepted)
    with pytest.raises(ValueError):
        schema.model_validate({"text": "x", "language": "fr"})
    assert offline.output_schema.model_json_schema()["title"] == "MotiveAnalysis"
    assert "turns" in json.dumps(offline.get_input_jsonschema())


def test_offline_stream_gives_labels_then_reply_then_the_result(offline) -> None:
    parts = list(offline.stream("快递丢了,你们说怎么赔吧"))
    assert [next(iter(p)) for p in parts] == ["labels", "reply", "result"]
    result = parts[-1]["result"]
    assert parts[0]["labels"]["primary_motive"] == result.primary_motive.id
    assert parts[1]["reply"] == result.reply.text
    whole = parts[0] + parts[1] + parts[2]
    assert whole["result"] is result


def test_llm_stream_gives_the_labels_before_the_reply_as_the_model_writes_it(
        llm_analyzer, endpoint) -> None:
    endpoint.stream_pieces = 40
    parts = list(llm_analyzer.stream(COMPLAINT))
    kinds = [next(iter(p)) for p in parts]
    assert kinds[0] == "labels" and kinds[-1] == "result"
    assert kinds.count("reply") >= 3  # the draft arrives in pieces, as it is written
    result = parts[-1]["result"]
    assert result.meta.backend == "llm"
    assert parts[0]["labels"] == {"primary_motive": "compensation",
                                  "secondary_motives": ["venting"],
                                  "stage": "voiced_grievance"}
    drafted = "".join(p["reply"] for p in parts if "reply" in p)
    assert drafted == good_answer(endpoint.requests[0])["reply"]
    assert endpoint.requests[0].body.get("stream") is True


def test_llm_astream_matches_stream(llm_analyzer) -> None:
    async def collect() -> list[Any]:
        return [part async for part in llm_analyzer.astream(COMPLAINT)]

    parts = asyncio.run(collect())
    assert [next(iter(p)) for p in parts][0] == "labels"
    assert parts[-1]["result"].primary_motive.id == "compensation"


def test_in_a_composed_chain_the_next_step_gets_the_result(offline) -> None:
    chain = offline | RunnableLambda(lambda result: result.primary_motive.id)
    assert list(chain.stream("快递丢了,你们说怎么赔吧")) == [
        offline.analyze("快递丢了,你们说怎么赔吧").primary_motive.id]


def test_both_backends_meet_the_backend_protocol(llm_analyzer, offline) -> None:
    backends: list[Backend] = [llm_analyzer.primary, offline.primary, llm_analyzer.offline]
    assert [b.name for b in backends] == ["llm", "offline", "offline"]
    prepared = offline.pipeline.prepare("快递丢了,你们说怎么赔吧")
    reply = offline.primary.answer(prepared)
    assert reply.backend == "offline" and not reply.checked.problems


@pytest.mark.parametrize("text", ["我有截图为证,明明是你们的错", "快递丢了,你们说怎么赔吧",
                                  "I was charged twice and nobody answers my emails"])
def test_analyze_search_and_the_retriever_give_the_same_guidance(
        text: str, llm_analyzer, endpoint, index_dir, monkeypatch) -> None:
    llm_analyzer.analyze(text)
    shown = endpoint.requests[0].guidance  # what the model was shown, as g1…g4
    monkeypatch.setenv("COMPLAINT_MOTIVE_INDEX_DIR", str(index_dir))
    out = CliRunner().invoke(app, ["search", text, "-k", "4", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    documents = GuidanceRetriever.from_settings(Settings(index_dir=index_dir), k=4).invoke(text)
    assert [r["chunk_id"] for r in rows] == [d.id for d in documents]
    # The model's g1…g4 are those chunks, in that order (each shown from its start).
    assert len(shown) == len(documents) == 4
    assert all(d.page_content.split("\n")[0][:30] in g for g, d in zip(shown, documents,
                                                                       strict=True))


def test_the_result_carries_the_versions_its_preparation_handed_forward(offline) -> None:
    prepared = offline.pipeline.prepare("快递丢了,你们说怎么赔吧")
    result = offline.pipeline.finish(prepared, offline.primary.answer(prepared))
    meta = result.meta
    assert (meta.prompt_version, meta.corpus_version, meta.taxonomy_version) == (
        prepared.versions.prompt, prepared.versions.corpus, prepared.versions.taxonomy)
    assert meta.corpus_version == offline.index.versions()["guidance"]
    assert meta.model == f"offline/{offline.model.version}"
