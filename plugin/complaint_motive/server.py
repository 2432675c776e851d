"""The HTTP service: ``complaint-motive serve`` (FastAPI + uvicorn).

``POST /v1/analyze``, ``POST /v1/analyze/batch``, ``GET /healthz``. Errors are RFC 9457
problem responses carrying the library's error kind; the OpenAPI schema comes from the
pydantic models.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import __version__
from .analyzer import MotiveAnalyzer, Outcome
from .batch_runner import Rejected
from .errors import (
    BackendError,
    BackendUnavailable,
    ComplaintMotiveError,
    ConfigurationError,
    ContentFilterError,
    InputError,
    OutputValidationError,
)
from .schema import MotiveAnalysis
from .settings import Settings
from .vocab import Fallback, Language

MAX_BODY_BYTES = 1_000_000
MAX_BATCH = 500

_STATUS: list[tuple[type[ComplaintMotiveError], int]] = [
    # A filtered complaint is unprocessable as sent, not an upstream fault.
    (InputError, 422), (ContentFilterError, 422), (BackendUnavailable, 503),
    (BackendError, 502),
    (OutputValidationError, 502), (ConfigurationError, 500),
]


class TurnIn(BaseModel):
    role: str = Field(max_length=20, description="customer or agent (客户 / 客服 …)")
    text: str = Field(max_length=20_000)


class AnalyzeRequest(BaseModel):
    """A complaint text (or ``[n] role: text`` transcript), or a list of turns."""

    model_config = ConfigDict(json_schema_extra={
        "oneOf": [{"required": ["text"]}, {"required": ["turns"]}]})

    id: str | None = Field(None, max_length=200)
    text: str | None = Field(None, max_length=50_000)
    turns: list[TurnIn] | None = Field(None, max_length=200)
    language: Language | None = Field(
        None, description="language of the reply and steps; default: the complaint's")
    fallback: Fallback | None = None

    @model_validator(mode="after")
    def _one_form(self) -> AnalyzeRequest:
        if (self.text is None) == (self.turns is None):
            raise ValueError("give exactly one of 'text' or 'turns'")
        return self

    def record(self) -> dict[str, Any]:
        """What the analyzer takes: ``{"id", "text" | "turns", "language"}``."""
        complaint = ({"text": self.text} if self.text is not None
                     else {"turns": [t.model_dump() for t in self.turns or []]})
        return {"id": self.id, **complaint, "language": self.language}


class BatchRequest(BaseModel):
    """Items are checked one by one: a bad item gets its own error outcome, the rest run."""

    items: list[Any] = Field(max_length=MAX_BATCH, json_schema_extra={
        "items": {"$ref": "#/components/schemas/AnalyzeRequest"}})
    concurrency: int = Field(8, ge=1, le=64)

    def records(self) -> list[dict[str, Any] | Rejected]:
        """What the analyzer takes, per item; an invalid item is ``Rejected`` with its
        ``InputError``, which becomes that item's outcome."""
        records: list[dict[str, Any] | Rejected] = []
        for number, item in enumerate(self.items, start=1):
            try:
                records.append(AnalyzeRequest.model_validate(item).record())
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "item"
                item_id = item.get("id") if isinstance(item, dict) else None
                records.append(Rejected(InputError(f"item {number}: {where}: {first['msg']}"),
                                        item_id if isinstance(item_id, str) else None))
        return records


class BatchResponse(BaseModel):
    outcomes: list[Outcome]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    backend: str
    corpus_version: str


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    kind: str


def _problem(status: int, kind: str, title: str, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, media_type="application/problem+json",
                        content=Problem(type=f"urn:complaint-motive:{kind}", title=title,
                                        status=status, detail=detail, kind=kind).model_dump())


def create_app(settings: Settings | None = None, *, token: str | None = None,
               analyzer: MotiveAnalyzer | None = None) -> FastAPI:
    """The ASGI app. ``token``: require ``Authorization: Bearer <token>``."""
    state: dict[str, MotiveAnalyzer] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["analyzer"] = analyzer or MotiveAnalyzer(settings or Settings())
        state["analyzer"].warm_up()
        yield

    problem_body = {"schema": {"$ref": "#/components/schemas/Problem"}}
    problems: dict[int | str, dict[str, Any]] = {
        code: {"model": Problem, "description": title,
               "content": {"application/problem+json": problem_body}} for code, title in [
            (401, "missing or wrong bearer token"), (413, "request too large"),
            (500, "misconfigured service"),
            (422, "input that cannot be analysed"), (502, "the LLM failed"),
            (503, "the LLM is unavailable")]}
    app = FastAPI(title="complaint-motive", version=__version__, lifespan=lifespan,
                  responses=problems)

    @app.middleware("http")
    async def limit_size(request: Request, call_next: Any) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _problem(413, "too_large", "Request too large",
                            f"the body is over {MAX_BODY_BYTES} bytes")
        return await call_next(request)

    @app.exception_handler(ComplaintMotiveError)
    async def library_error(_: Request, error: ComplaintMotiveError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(error, kind)), 500)
        return _problem(status, error.kind, type(error).__name__, error.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"])
        return _problem(422, "input", "Invalid request", f"{where}: {first['msg']}")

    def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise _Unauthorised()

    @app.exception_handler(_Unauthorised)
    async def unauthorised(_: Request, __: Exception) -> JSONResponse:
        response = _problem(401, "unauthorised", "Unauthorised", "send Authorization: Bearer "
                            "<token>")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    guarded = [Depends(authorised)]

    @app.post("/v1/analyze", response_model=MotiveAnalysis, dependencies=guarded)
    async def analyze(body: AnalyzeRequest) -> MotiveAnalysis:
        return await state["analyzer"].aanalyze(body.record(), fallback=body.fallback)

    @app.post("/v1/analyze/batch", response_model=BatchResponse, dependencies=guarded)
    async def analyze_batch(body: BatchRequest) -> BatchResponse:
        outcomes = await state["analyzer"].aanalyze_many(body.records(),
                                                         concurrency=body.concurrency)
        return BatchResponse(outcomes=outcomes)

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        current = state["analyzer"]
        return Health(status="ok", version=__version__, backend=current.backend,
                      corpus_version=current.index.versions()["guidance"])

    return app


class _Unauthorised(Exception):
    pass
