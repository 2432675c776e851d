"""A scripted OpenAI files + batches endpoint, shaped like the documented API.

- ``POST /v1/files`` (multipart, ``purpose=batch``) stores the JSONL and returns a file
  object; ``GET /v1/files/{id}/content`` returns a file's bytes.
- ``POST /v1/batches`` validates the input file the way the service does (each line a
  ``custom_id`` unique in the file, ``method`` POST, ``url`` equal to the batch's endpoint)
  and returns a batch in ``validating``; a file that breaks those rules ends ``failed``
  with ``errors.data``.
- ``GET /v1/batches/{id}`` moves the batch on one step per poll: validating → in_progress
  → finalizing → completed, answering each request line with the chat script. Per the
  documentation an output line is ``{"id", "custom_id", "response": {"status_code",
  "request_id", "body"}, "error": null}``; requests that did not succeed go to the error
  file; with ``expire_after=n`` the window runs out after n requests: the batch ends
  ``expired`` and the rest get ``error.code`` ``batch_expired`` ("The request could not be
  executed before the completion window ended").
- ``POST /v1/chat/completions`` is the synchronous chat endpoint (the re-asks).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from scripted_llm import ScriptedEndpoint, Seen


@dataclass
class ScriptedBatches:
    chat: ScriptedEndpoint = field(default_factory=ScriptedEndpoint)
    expire_after: int | None = None
    refuse: dict[str, str] | None = None  # a validation error that fails the whole batch
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: int = 0
    polls: int = 0
    batch_answered: int = 0  # requests answered inside batches

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/chat/completions"):
            return self.chat.handler(request)
        if path.endswith("/files") and request.method == "POST":
            return self._upload(request)
        if (found := re.search(r"/files/([\w-]+)/content$", path)):
            return httpx.Response(200, content=self.files[found.group(1)])
        if path.endswith("/batches") and request.method == "POST":
            return self._create(json.loads(request.content))
        if (found := re.search(r"/batches/([\w-]+)$", path)):
            return self._poll(found.group(1))
        return httpx.Response(404, json={"error": {"message": f"no route {path}"}})

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return self.handler(request)

    def clients(self) -> dict[str, Any]:
        return {"http_client": httpx.Client(transport=httpx.MockTransport(self.handler)),
                "http_async_client": httpx.AsyncClient(
                    transport=httpx.MockTransport(self.async_handler))}

    def _upload(self, request: httpx.Request) -> httpx.Response:
        boundary = request.headers["content-type"].split("boundary=")[1].encode()
        parts = request.content.split(b"--" + boundary)
        fields = {}
        for part in parts:
            if b"\r\n\r\n" not in part:
                continue
            head, _, value = part.partition(b"\r\n\r\n")
            name = re.search(rb'name="([^"]+)"', head)
            if name:
                fields[name.group(1).decode()] = value.rstrip(b"\r\n")
        assert fields.get("purpose") == b"batch", fields.keys()
        self.uploads += 1
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = fields["file"]
        return httpx.Response(200, json={
            "id": file_id, "object": "file", "bytes": len(fields["file"]),
            "created_at": 1_700_000_000, "filename": "complaints.jsonl", "purpose": "batch",
            "status": "processed"})

    def _batch(self, batch_id: str) -> dict[str, Any]:
        return self.batches[batch_id]

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        assert body["completion_window"] == "24h"
        batch_id = f"batch_{len(self.batches) + 1}"
        lines = [json.loads(line) for line in self.files[body["input_file_id"]].splitlines()
                 if line.strip()]
        problems = [self.refuse] if self.refuse else []
        ids = [line.get("custom_id") for line in lines]
        if len(set(ids)) != len(ids):
            problems.append({"code": "duplicate_custom_id",
                             "message": "custom_id must be unique in the file"})
        if any(line.get("method") != "POST" or line.get("url") != body["endpoint"]
               for line in lines):
            problems.append({"code": "invalid_request",
                             "message": "every line must POST to the batch's endpoint"})
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"], "completion_window": "24h",
            "status": "validating", "created_at": 1_700_000_000, "output_file_id": None,
            "error_file_id": None, "metadata": body.get("metadata"),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "errors": {"object": "list", "data": problems} if problems else None,
            "_lines": lines}
        return httpx.Response(200, json=self._public(batch_id))

    def _public(self, batch_id: str) -> dict[str, Any]:
        return {k: v for k, v in self._batch(batch_id).items() if not k.startswith("_")}

    def _poll(self, batch_id: str) -> httpx.Response:
        self.polls += 1
        batch = self._batch(batch_id)
        status = batch["status"]
        if status == "validating":
            batch["status"] = "failed" if batch["errors"] else "in_progress"
        elif status == "in_progress":
            batch["status"] = "finalizing"
        elif status == "finalizing":
            self._execute(batch)
        return httpx.Response(200, json=self._public(batch_id))

    def _execute(self, batch: dict[str, Any]) -> None:
        output, errors = [], []
        for number, line in enumerate(batch["_lines"]):
            record = {"id": f"batch_req_{number}", "custom_id": line["custom_id"]}
            if self.expire_after is not None and number >= self.expire_after:
                errors.append({**record, "response": None, "error": {
                    "code": "batch_expired", "message": "This request could not be executed "
                    "before the completion window expired."}})
                continue
            response = self._answer(line["body"])
            self.batch_answered += 1
            entry = {**record, "response": {"status_code": response.status_code,
                                            "request_id": f"req_{number}",
                                            "body": response.json()}, "error": None}
            (output if response.status_code == 200 else errors).append(entry)
        counts = batch["request_counts"]
        counts["completed"], counts["failed"] = len(output), len(errors)
        for kind, records in (("output_file_id", output), ("error_file_id", errors)):
            if records:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                              for r in records).encode()
                batch[kind] = file_id
        batch["status"] = "expired" if self.expire_after is not None else "completed"

    def _answer(self, body: dict[str, Any]) -> httpx.Response:
        request = httpx.Request("POST", "https://batch.internal/v1/chat/completions",
                                json=body)
        response = self.chat.handler(request)
        response.read()
        return response


def seen_complaints(endpoint: ScriptedEndpoint) -> list[str]:
    return [Seen(s.body).complaint for s in endpoint.requests]
