"""The HTTP service: ``complaint-motive serve`` (FastAPI + uvicorn).

``POST /v1/analyze``, ``POST /v1/analyze/batch``, ``GET /healthz``. Errors are RFC 9457
problem responses carrying the library's error kind; the OpenAPI schema comes from the
pydantic models.

Bounded against misuse from the network: the body limit counts the bytes actually read
(chunked bodies too), a body must arrive within ``body_timeout``, a connection must send its
request headers within ``header_timeout`` (slow and half-open connections are closed), and
the access log writes the path without its query string (tokens end up in URLs).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .. import __version__
from ..analysis.batch_runner import Rejected
from ..analysis.schema import MotiveAnalysis
from ..analyzer import MotiveAnalyzer, Outcome
from ..errors import (
    BackendError,
    BackendUnavailable,
    ComplaintMotiveError,
    ConfigurationError,
    ContentFilterError,
    InputError,
    OutputValidationError,
)
from ..settings import Settings
from ..vocab import Fallback, Language

if TYPE_CHECKING:
    import uvicorn

MAX_BODY_BYTES = 1_000_000
MAX_BATCH = 500
#: Seconds a client has to send its request headers, then its whole body.
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
#: Connections and requests served at once; beyond it uvicorn answers 503 at once.
MAX_CONCURRENCY = 200

access_log = logging.getLogger("complaint_motive.access")

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
    status: Literal["ok", "degraded"] = Field(
        description="degraded while the LLM's circuit breaker is open (answers then come "
        "from the offline analyzer, where the caller allows it, or fail fast)")
    version: str
    backend: str
    corpus_version: str
    breaker: Literal["closed", "open", "half_open"] | None = Field(
        None, description="the LLM circuit breaker's state (None for the offline backend)")


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
               analyzer: MotiveAnalyzer | None = None,
               body_timeout: float = BODY_TIMEOUT) -> FastAPI:
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

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, timeout=body_timeout)
    # uvicorn's own access log, where it is on, writes the path without its query too.
    logging.getLogger("uvicorn.access").addFilter(_WITHOUT_QUERY)

    @app.middleware("http")  # outermost: refused requests are logged too
    async def log_access(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        # The path only: a query string can carry a token or personal data.
        access_log.info("%s %s %d %.1fms", request.method, request.url.path,
                        response.status_code, (time.perf_counter() - started) * 1000)
        return response

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
        breaker = current.llm.breaker.state if current.llm is not None else None
        return Health(status="degraded" if breaker == "open" else "ok", version=__version__,
                      backend=current.backend, breaker=breaker,
                      corpus_version=current.index.versions()["guidance"])

    return app


class _WithoutQuery(logging.Filter):
    """Drop the query string from uvicorn's access log records (``client, method, path,
    version, status``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


_WITHOUT_QUERY = _WithoutQuery()


class BodyLimit:
    """ASGI middleware: read the body before the app does, counting the bytes as they
    arrive (a declared ``Content-Length`` or none, chunked or not), and answer 413 past
    ``max_bytes`` or 408 when it does not arrive within ``timeout`` seconds, without reading
    the rest. The app then reads the body from memory."""

    def __init__(self, app: Any, *, max_bytes: int, timeout: float) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _send_problem(send, 413, "too_large", "Request too large",
                                f"the body is over {self.max_bytes} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.001))
            except TimeoutError:
                await _send_problem(send, 408, "timeout", "Request timeout",
                                    f"the body did not arrive within {self.timeout:.0f} s")
                return
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _send_problem(send, 413, "too_large", "Request too large",
                                    f"the body is over {self.max_bytes} bytes")
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)


async def _send_problem(send: Any, status: int, kind: str, title: str, detail: str) -> None:
    body = json.dumps(Problem(type=f"urn:complaint-motive:{kind}", title=title, status=status,
                              detail=detail, kind=kind).model_dump()).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def server_config(app: Any, *, host: str = "127.0.0.1", port: int = 8080,
                  header_timeout: float = HEADER_TIMEOUT,
                  limit_concurrency: int = MAX_CONCURRENCY, **options: Any) -> uvicorn.Config:
    """A uvicorn configuration with the service's bounds: connections that do not send
    their request headers within ``header_timeout`` seconds are closed, at most
    ``limit_concurrency`` connections are served at once, keep-alive is short, and
    uvicorn's own access log (which writes query strings) is off: the app logs access to
    ``complaint_motive.access``, path only.

    >>> server = uvicorn.Server(server_config(create_app()))  # doctest: +SKIP
    """
    import uvicorn

    protocol = _bounded_h11(header_timeout)
    return uvicorn.Config(app, host=host, port=port, http=protocol, access_log=False,
                          limit_concurrency=limit_concurrency, timeout_keep_alive=5,
                          **options)


def _bounded_h11(header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline for each request's headers: uvicorn bounds
    idle keep-alive connections but not one that connects and then sends nothing, or its
    headers a byte at a time."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()

        def _arm_header_deadline(self) -> None:
            waiting_for = self.cycle  # a new request makes a new cycle

            def check() -> None:
                if self.cycle is waiting_for and not self.transport.is_closing():
                    self.transport.close()

            self.loop.call_later(header_timeout, check)

    return BoundedH11Protocol


class _Unauthorised(Exception):
    pass
