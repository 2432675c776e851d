"""The OpenAI Batch API for big runs: half the price of synchronous calls (OpenAI, Azure),
answers within the 24 h completion window.

A run writes one request line per complaint (``{"custom_id", "method": "POST", "url":
"/v1/chat/completions", "body"}``, the body exactly what the synchronous call would send),
uploads the file (``purpose="batch"``), creates the batch, polls it with a progress bar,
downloads the output and error files, and validates every answer with the library's own
validation. What the batch did not answer well — an invalid answer, an error line, a
request the window expired on (``batch_expired``), a batch that failed outright — is
re-asked or asked again synchronously, through the normal retry and re-ask path.

The batch id is written to a state file the moment the batch exists: an interrupted run
started again with the same input and state file polls the same batch instead of paying
for a second one.

>>> run = BatchRun(analyzer, Path("out.jsonl.batch-state.json"))     # doctest: +SKIP
>>> outcomes = asyncio.run(run.outcomes(items))                        # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ..analysis.prompts import without_boundary
from ..errors import ConfigurationError
from ..readers import read_jsonl

if TYPE_CHECKING:
    from ..analysis.batch_runner import Outcome
    from ..analysis.types import Backend, Prepared
    from ..analyzer import MotiveAnalyzer

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
#: The documented input limits: "The file can contain up to 50,000 requests, and can be up
#: to 200 MB in size."
MAX_REQUESTS, MAX_BYTES = 50_000, 200 * 1024 * 1024
#: Statuses after which a batch changes no more (openai ``Batch.status``).
FINAL = ("completed", "failed", "expired", "cancelled")


class _OutputLine(BaseModel):
    """A line of a batch's output or error file (read as the provider wrote it)."""

    model_config = ConfigDict(extra="allow")

    custom_id: Any = None
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class BatchRun:
    """One analysis run through the Batch API, resumable from ``state_path``."""

    def __init__(self, analyzer: MotiveAnalyzer, state_path: Path, *,
                 poll_interval: float = 30.0, progress_bar: bool = False) -> None:
        if analyzer.llm is None:
            raise ConfigurationError("--batch-api needs the LLM backend (an API key or base "
                                     "URL); the offline analyzer has nothing to batch")
        self.analyzer, self.llm = analyzer, analyzer.llm
        self.state_path, self.poll_interval = state_path, poll_interval
        self.progress_bar = progress_bar

    @property
    def client(self) -> Any:
        """The files and batches client of the running event loop: pooled connections of a
        loop that has closed (an earlier ``analyze_many``) cannot serve this one."""
        return self.llm.async_openai_client()

    # -- the request file ------------------------------------------------------------------

    # -- the run ---------------------------------------------------------------------------

    async def aiter_outcomes(self, items: Iterable[Any], *, concurrency: int = 8,
                             fallback: Any = None) -> AsyncIterator[Outcome]:
        """``MotiveAnalyzer.aiter_outcomes`` through the Batch API: one outcome per input,
        in input order (all at the end: a batch answers as a whole)."""
        for outcome in await self.outcomes(items, concurrency=concurrency, fallback=fallback):
            yield outcome

    async def outcomes(self, items: Iterable[Any], *, concurrency: int = 8,
                       fallback: Any = None) -> list[Outcome]:
        from ..analysis.batch_runner import Outcome, failed, unpack

        unpacked = [unpack(item) for item in items]
        runner = self.analyzer.runner(fallback)
        await asyncio.to_thread(self.analyzer.warm_up)
        prepared = await asyncio.to_thread(runner.prepare_block,
                                           [payload for _, payload in unpacked])
        lines = [{"custom_id": str(index), "method": "POST", "url": ENDPOINT,
                  "body": self.llm.request_body(ready)}
                 for index, ready in enumerate(prepared)
                 if not isinstance(ready, Exception)]
        answers, failed_lines = await self._run_batch(lines) if lines else ({}, {})
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(index: int) -> Outcome:
            item_id, ready = unpacked[index][0], prepared[index]
            try:
                if isinstance(ready, Exception):
                    raise ready
                result = await self._finish(ready, answers.get(str(index)),
                                            failed_lines.get(str(index)), gate, runner.second)
            except Exception as error:
                return failed(index, item_id, error)
            return Outcome(index=index, id=item_id, result=result)

        return list(await asyncio.gather(*(one(i) for i in range(len(unpacked)))))

    async def _finish(self, ready: Prepared, body: dict[str, Any] | None,
                      problem: str | None, gate: asyncio.Semaphore,
                      second: Backend | None) -> Any:
        """Validate the batch's answer; re-ask (or ask) synchronously what it lacks."""
        from ..errors import BackendError, OutputValidationError

        pipeline = self.analyzer.pipeline
        exchange = self.llm.exchange(ready)
        try:
            if body is not None:
                exchange.next_request()  # the batch's request was the first attempt
                if (reply := exchange.receive(self.llm.parse_completion(body, ready))) is not None:
                    return pipeline.finish(ready, reply)
                log.info("batch answer rejected; re-asking synchronously")
            elif problem:
                log.info("batch request failed (%s); asking synchronously", problem)
            async with gate:
                reply = await self.llm.acontinue(exchange)
        except (BackendError, OutputValidationError) as error:
            if "usage" not in error.details:  # raised by the batch answer itself
                error.details.update(usage=exchange.usage.model_dump(),
                                     attempts=exchange.attempts)
            return await asyncio.to_thread(pipeline.recover, ready, error, second)
        return pipeline.finish(ready, reply)

    async def _run_batch(self, lines: list[dict[str, Any]]
                         ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Submit (or resume) the batch and wait for it: answers (chat.completion bodies) and
        failures (a reason), by custom_id."""
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        if len(lines) > MAX_REQUESTS or len(data) > MAX_BYTES:
            raise ConfigurationError(
                f"a batch takes at most {MAX_REQUESTS} requests and 200 MB; this one has "
                f"{len(lines)} requests, {len(data) / 1e6:.0f} MB: split the input file")
        # Each request's fence code is new every time it is built: not part of its identity.
        fingerprint = hashlib.sha256(without_boundary(data.decode()).encode()).hexdigest()
        state = self._load_state()
        if state.get("fingerprint") == fingerprint and state.get("batch_id"):
            batch = await self.client.batches.retrieve(state["batch_id"])
            log.info("resuming batch %s (%s)", batch.id, batch.status)
        else:
            uploaded = await self.client.files.create(
                file=("complaints.jsonl", data, "application/jsonl"), purpose="batch")
            batch = await self.client.batches.create(
                input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h",
                metadata={"source": "complaint-motive"})
            self._save_state({"fingerprint": fingerprint, "batch_id": batch.id,
                              "input_file_id": uploaded.id, "requests": len(lines)})
        batch = await self._wait(batch, len(lines))
        self._save_state({**self._load_state(), "status": batch.status})
        answers: dict[str, dict[str, Any]] = {}
        failures: dict[str, str] = {}
        if batch.status == "failed":
            reasons = [e.message for e in (batch.errors.data if batch.errors else []) or []
                       if e.message]
            log.warning("the batch failed (%s); asking every complaint synchronously",
                        "; ".join(reasons[:3]) or "no reason given")
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for read in read_jsonl(content.content, _OutputLine):
                if read.item is None:  # that complaint is asked synchronously
                    log.warning("batch output file, %s: %s", read.where, read.problem)
                    continue
                record = read.item.model_dump()
                response = record.get("response") or {}
                custom_id = str(record.get("custom_id"))
                if response.get("status_code") == 200 and record.get("error") is None:
                    answers[custom_id] = response["body"]
                else:
                    failures[custom_id] = ((record.get("error") or {}).get("code")
                                           or f"status {response.get('status_code')}")
        return answers, failures

    async def _wait(self, batch: Any, total: int) -> Any:
        from ..progress import progress

        done = 0
        with progress(total, "batch", disable=not self.progress_bar) as advance:
            while batch.status not in FINAL:
                counts = batch.request_counts
                now = (counts.completed + counts.failed) if counts else 0
                for _ in range(max(now - done, 0)):
                    advance()
                done = max(done, now)
                await asyncio.sleep(self.poll_interval)
                batch = await self.client.batches.retrieve(batch.id)
            for _ in range(max(total - done, 0)):
                advance()
        log.info("batch %s ended %s", batch.id, batch.status)
        return batch

    def _load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError:
            raise ConfigurationError(f"{self.state_path} is not a batch state file; remove "
                                     "it to submit a new batch") from None
        return state if isinstance(state, dict) else {}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_suffix(self.state_path.suffix + ".tmp")
        temporary.write_text(json.dumps(state, indent=2), encoding="utf-8")
        temporary.replace(self.state_path)  # never half-written
