"""The HTTP API: a FastAPI app over a :class:`Service` (the daemon, or anything shaped like it).

Bodies are parsed by hand rather than through pydantic models: a batch of ten thousand
events validated field by field in Python would cost more than committing it, and the
event log validates rows anyway (naming the field and the reason). The OpenAPI document
still describes every body.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from rtrec import __version__
from rtrec.contracts import Health, HealthStatus, StatsResponse
from rtrec.errors import InvalidInputError, NotFoundError, Overloaded, RtrecError, StorageError
from rtrec.events.validate import Unparsed, split_json_array
from rtrec.serve.failures import error_response, report_unexpected

if TYPE_CHECKING:
    import pyarrow as pa


class Service(Protocol):
    """What the API needs from the daemon."""

    max_body_bytes: int
    max_batch: int
    token: str | None
    read_token: str | None

    def simple_events(self, body: bytes) -> pa.Table | None: ...
    def ingest_events(self, rows: list[Any] | pa.Table, source: str) -> dict[str, Any]: ...
    def check_capacity(self, incoming: int = 0, arrived: float | None = None) -> None: ...
    def upsert_items(self, rows: list[Any]) -> dict[str, Any]: ...
    def recommend(
        self,
        user_id: str,
        k: int,
        *,
        exclude_seen: bool,
        candidates: list[str] | None,
        context: dict[str, Any] | None,
        policy: str | None,
        explain: bool = False,
        category: str | None = None,
        exclude: list[str] | None = None,
    ) -> dict[str, Any]: ...
    def serves_inline(
        self, user_id: str, candidates: list[str] | None, *, context: dict[str, Any] | None, category: str | None
    ) -> bool: ...
    def similar(self, item_id: str, k: int) -> dict[str, Any]: ...
    def forget(self, user_id: str) -> dict[str, Any]: ...
    def stats(self) -> StatsResponse: ...
    def metrics_text(self) -> str: ...
    def health(self) -> Health: ...


class PayloadTooLarge(RtrecError):
    """A request body or batch over the configured limit."""


class BadBody(RtrecError):
    """A body that is not JSON of the expected shape."""


NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines", "application/ndjson")

_EVENT_EXAMPLE = {
    "event_id": "e-1",
    "ts": "2024-05-01T12:00:00Z",
    "user_id": "u1",
    "item_id": "i42",
    "event_type": "click",
    "request_id": "r-9",
}
_ITEM_EXAMPLE = {"item_id": "i42", "title": "Trail shoes", "category": "sport", "tags": ["running"]}


def _array_body(description: str, example: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": {"type": "object"}},
                    "example": [example],
                },
                "application/x-ndjson": {"schema": {"type": "string"}, "example": json.dumps(example) + "\n"},
            },
        }
    }


# Methods the read-only token may use: no route behind them changes state.
READ_METHODS = frozenset({"GET", "HEAD"})
# The ASGI scope key where BearerAuth leaves the caller's token scope ("write", "read" or None).
TOKEN_SCOPE = "rtrec.token_scope"


class BearerAuth:
    """ASGI middleware: every route except ``/healthz`` needs ``Authorization: Bearer <token>``.

    ``token`` opens every route; ``read_token``, when set, only GET and HEAD ones (anything
    else answers 403 with it). ``/healthz`` stays open and finds the caller's scope under
    ``scope[TOKEN_SCOPE]``, to decide how much to tell.
    """

    def __init__(
        self, app: Any, token: str, read_token: str | None = None, open_paths: tuple[str, ...] = ("/healthz",)
    ) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.expected_read = f"Bearer {read_token}".encode() if read_token else None
        self.open_paths = open_paths
        also = " (GET and HEAD routes also take <RTREC_READ_TOKEN>)" if read_token else ""
        self.hint = f"send the header 'Authorization: Bearer <RTREC_TOKEN>'{also}"

    def granted(self, got: bytes) -> str | None:
        """The scope ``got`` (the Authorization header) grants: "write", "read" or None."""
        # Both comparisons always run, each in constant time: the timing does not tell which token matched.
        write = hmac.compare_digest(got, self.expected)
        read = self.expected_read is not None and hmac.compare_digest(got, self.expected_read)
        return "write" if write else "read" if read else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        got = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                got = value
                break
        granted = scope[TOKEN_SCOPE] = self.granted(got)
        method = scope.get("method", "")
        if scope.get("path") in self.open_paths or granted == "write" or (granted == "read" and method in READ_METHODS):
            await self.app(scope, receive, send)
            return
        if granted == "read":
            resp = error_response(
                403,
                f"forbidden: this token may only read (GET and HEAD), not {method}",
                "send the full token (serve.token, RTREC_TOKEN) to write",
            )
        else:
            reason = "missing bearer token" if not got else "wrong bearer token"
            resp = error_response(401, f"unauthorized: {reason}", self.hint)
            resp.headers["WWW-Authenticate"] = "Bearer"
        await resp(scope, receive, send)


def _document_tokens(app: FastAPI, read_token: bool) -> None:
    """Describe the bearer token scopes in ``app``'s OpenAPI document: which token each operation takes."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemes = {"token": "serve.token (RTREC_TOKEN): every route."}
        scopes = "Send `Authorization: Bearer <token>`: `serve.token` opens every route."
        if read_token:
            schemes["read_token"] = "serve.read_token (RTREC_READ_TOKEN): GET and HEAD routes only; others answer 403."
            scopes += (
                " `serve.read_token` opens only GET and HEAD routes (recommend, similar, stats, metrics, this"
                " document); POST and DELETE with it answer 403."
            )
        scopes += " `/healthz` is open, but without a valid token it answers only `status`."
        schema["info"]["description"] = f"{schema['info'].get('description', '')}\n\n{scopes}".strip()
        schema.setdefault("components", {})["securitySchemes"] = {
            name: {"type": "http", "scheme": "bearer", "description": text} for name, text in schemes.items()
        }
        readers: list[dict[str, list[str]]] = [{name: []} for name in schemes]
        for path, operations in schema.get("paths", {}).items():
            for method, op in operations.items():
                if path == "/healthz":
                    op["security"] = [{}, *readers]  # {}: no token needed
                else:
                    op["security"] = readers if method.upper() in READ_METHODS else [{"token": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


# An oversized body is still read (and thrown away) up to this many bytes before the 413
# goes out: a client that sends its whole body before reading the answer would otherwise
# find the connection closed under it and never see why.
DRAIN_BYTES = 64 * 1024 * 1024


async def _read_body(request: Request, limit: int) -> bytes:
    declared = None
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise BadBody(f"invalid Content-Length header {length!r}") from None
        if declared > DRAIN_BYTES:
            raise _too_large(limit, declared)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_BYTES:
            break
        if size <= limit:
            chunks.append(chunk)
    if size > limit or (declared is not None and declared > limit):
        raise _too_large(limit, declared)
    return b"".join(chunks)


def _too_large(limit: int, declared: int | None) -> PayloadTooLarge:
    size = f"{declared} bytes, " if declared is not None else ""
    return PayloadTooLarge(
        f"request body is {size}over the limit of {limit} bytes",
        hint="split the batch, or raise serve.max_body_bytes",
    )


def _decode_row(text: str | bytes, where: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        return Unparsed("row: nested too deep to decode", _clip_raw(text))
    except ValueError as exc:
        return Unparsed(f"row: {where} is not valid JSON ({exc})", _clip_raw(text))


def _clip_raw(text: str | bytes) -> str:
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return s[:65_536]


def _media(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def parse_rows(body: bytes, content_type: str, what: str, max_batch: int) -> list[Any]:
    """Decode a JSON array or NDJSON body into a list; raise with the line or position at fault."""
    ctype = _media(content_type)
    if not body.strip():
        raise BadBody(f"request body is empty: send a JSON array of {what}")
    if ctype in NDJSON_TYPES:
        # Line by line: a line that is not JSON is one rejected row, not a failed request.
        rows: list[Any] = []
        for lineno, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            rows.append(_decode_row(line, f"line {lineno}"))
            if len(rows) > max_batch:
                break
    else:
        try:
            rows = json.loads(body)
        except RecursionError:
            # Some element nests deeper than the decoder can go: decode the elements one by one.
            parts = split_json_array(body.decode("utf-8", "replace"))
            if parts is None:
                raise BadBody(f"request body is not valid JSON: nested too deep for a {what} array") from None
            rows = [_decode_row(p, f"element {k}") for k, p in enumerate(parts)]
        except ValueError as exc:
            raise BadBody(
                f"request body is not valid JSON: {exc}", hint="send a JSON array, or NDJSON with application/x-ndjson"
            ) from None
        if isinstance(rows, dict):
            rows = [rows]  # one object is a batch of one
        if not isinstance(rows, list):
            raise BadBody(f"request body must be a JSON array of {what}, got {type(rows).__name__}")
    if len(rows) > max_batch:
        raise PayloadTooLarge(
            f"batch has more than {max_batch} {what}, over the limit of {max_batch}",
            hint="split the batch, or raise serve.max_batch",
        )
    return rows


def create_app(service: Service) -> FastAPI:
    """The FastAPI application serving ``service``."""
    # One batch of events at a time: commits are serial, and parallel decoding only took the
    # interpreter from recommend and the learner. A batch waits for its turn here, without a worker
    # thread: one waiting for the learner (up to a second) holds only one, so recommend finds threads free.
    ingest_turn = asyncio.Lock()
    app = FastAPI(
        title="rtrec",
        version=__version__,
        description="A real-time recommender: post events and items, get recommendations with propensities.",
    )
    report_unexpected(app)  # anything no handler below takes: a JSON 500, the traceback logged

    @app.exception_handler(PayloadTooLarge)
    async def _too_large(request: Request, exc: PayloadTooLarge) -> JSONResponse:
        return error_response(413, str(exc), exc.hint)

    @app.exception_handler(BadBody)
    async def _bad_body(request: Request, exc: BadBody) -> JSONResponse:
        return error_response(400, str(exc), exc.hint)

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        out = error_response(429, str(exc), exc.hint, retry_after_s=exc.retry_after_s)
        out.headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
        return out

    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError) -> JSONResponse:
        return error_response(503, str(exc), exc.hint)

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return error_response(404, str(exc), exc.hint)

    @app.exception_handler(RtrecError)
    async def _rtrec(request: Request, exc: RtrecError) -> JSONResponse:
        return error_response(422, str(exc), exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body"))
            parts.append(f"{loc}: {err.get('msg')}")
        return error_response(422, "invalid request: " + "; ".join(parts))

    @app.get("/healthz", tags=["ops"], response_model=Health | HealthStatus)
    async def healthz(request: Request) -> Response:
        """Liveness: always open, even when a token protects the rest.

        While a token is configured, a caller without a valid one (either scope) gets only
        ``status``: the learner's error and the rest need a token.
        """
        health = service.health()
        if service.token and request.scope.get(TOKEN_SCOPE) is None:
            return JSONResponse(HealthStatus(status=health["status"]))
        return JSONResponse(health)

    @app.post(
        "/v1/events",
        tags=["ingest"],
        openapi_extra=_array_body("Events in the canonical schema: a JSON array, or NDJSON.", _EVENT_EXAMPLE),
        responses={
            200: {"description": '{"accepted": n, "duplicates": n, "rejected": [{"index": i, "reason": "..."}]}'},
            400: {"description": "Body is not JSON"},
            413: {"description": "Body or batch over the limit"},
            429: {"description": "The learner is behind: retry after the Retry-After header's seconds"},
        },
    )
    async def post_events(request: Request) -> Response:
        """Append events; answers once they are committed. Idempotent by ``event_id``.

        While the learner is behind (see ``serve.max_lag_s``) the answer is 429 with a
        ``Retry-After`` header, and nothing of the batch is stored: send it again later.
        """
        arrived = time.monotonic()
        body = await _read_body(request, service.max_body_bytes)
        ctype = request.headers.get("content-type", "application/json")
        service.check_capacity()  # refused at once only if waiting could not help

        def work() -> dict[str, Any]:
            simple = None if _media(ctype) in NDJSON_TYPES else service.simple_events(body)
            rows = simple if simple is not None else parse_rows(body, ctype, "events", service.max_batch)
            service.check_capacity(len(rows), arrived)  # waits a little for room if needed
            return service.ingest_events(rows, "http")

        async with ingest_turn:
            out = await run_in_threadpool(work)
        return JSONResponse(out)

    @app.post(
        "/v1/items",
        tags=["ingest"],
        openapi_extra=_array_body("Catalog items to insert or replace, keyed by item_id.", _ITEM_EXAMPLE),
        responses={200: {"description": '{"upserted": n, "rejected": [{"index": i, "reason": "..."}]}'}},
    )
    async def post_items(request: Request) -> Response:
        """Insert or replace catalog items."""
        body = await _read_body(request, service.max_body_bytes)
        ctype = request.headers.get("content-type", "application/json")

        def work() -> dict[str, Any]:
            rows = parse_rows(body, ctype, "items", service.max_batch)
            return service.upsert_items(rows)

        return JSONResponse(await run_in_threadpool(work))

    @app.get("/v1/recommend", tags=["serve"])
    async def recommend(
        user_id: str = Query(..., min_length=1, max_length=512, description="Who to recommend for."),
        k: int = Query(10, ge=1, le=1000, description="Slate length."),
        exclude_seen: bool = Query(True, description="Leave out items the user rated, purchased or dismissed."),
        candidates: str | None = Query(None, description="Comma-separated item ids to rank instead of the catalog."),
        context: str | None = Query(
            None, description='JSON object of request context, e.g. {"device": "mobile", "text": "running shoes"}.'
        ),
        policy: str | None = Query(
            None, description="Override the exploration policy: none, epsilon, softmax or thompson."
        ),
        explain: bool = Query(
            False,
            description="Also return, per item, the candidate sources that proposed it, each ranking feature's "
            "contribution to its score, and the features the CTR model scored (hashed indices, dense values by "
            "name) with its probability: what is learned when the impression is logged with this request_id.",
        ),
        category: str | None = Query(None, max_length=512, description="Only items of this catalog category."),
        exclude: str | None = Query(None, description="Comma-separated item ids never to return."),
    ) -> Response:
        """A slate with scores and, per item, ``propensity`` (the probability that the exploration
        policy puts it in this list; echo it into the impression event) and ``position_propensity``
        (at its position)."""
        ctx: dict[str, Any] | None = None
        if context:
            try:
                ctx = json.loads(context)
            except ValueError as exc:
                raise InvalidInputError(f"query parameter context is not valid JSON: {exc}") from None
            if not isinstance(ctx, dict):
                raise InvalidInputError("query parameter context must be a JSON object")
        cands = [c for c in (s.strip() for s in candidates.split(",")) if c] if candidates is not None else None
        if cands is not None and len(cands) > service.max_batch:
            raise PayloadTooLarge(f"candidates lists {len(cands)} items, over the limit of {service.max_batch}")
        skip = [c for c in (s.strip() for s in exclude.split(",")) if c] if exclude is not None else None
        if skip is not None and len(skip) > service.max_batch:
            raise PayloadTooLarge(f"exclude lists {len(skip)} items, over the limit of {service.max_batch}")

        def call() -> dict[str, Any]:
            return service.recommend(
                user_id,
                k,
                exclude_seen=exclude_seen,
                candidates=cands,
                context=ctx,
                policy=policy,
                explain=explain,
                category=category,
                exclude=skip,
            )

        # A known user's list, or a stranger's on a small catalog (a few ms), is served on the event
        # loop: two thread hand-offs cost more than it does. Anything else (a stranger's text, a
        # large catalog's scan) must not hold up other requests.
        inline = service.serves_inline(user_id, cands, context=ctx, category=category)
        return JSONResponse(call() if inline else await run_in_threadpool(call))

    @app.get("/v1/similar", tags=["serve"])
    async def similar(
        item_id: str = Query(..., min_length=1, max_length=512, description="The item to find neighbours of."),
        k: int = Query(10, ge=1, le=1000, description="How many similar items."),
    ) -> Response:
        """Items like ``item_id``: co-visitation (who engaged with it also engaged with) blended with
        text similarity, so a brand-new item with text has neighbours too. Each item says its source."""
        return JSONResponse(await run_in_threadpool(lambda: service.similar(item_id, k)))

    @app.delete(
        "/v1/users/{user_id:path}",
        tags=["privacy"],
        responses={
            200: {
                "description": "What was removed: events, rejected rows, quarantine records, examples the "
                "model's per-user counters held, pending impressions, replay rows, checkpoint files replaced "
                "and inbox files rewritten; the database file is rewritten within compact_within_s."
            }
        },
    )
    async def forget_user(user_id: str) -> Response:
        """Forget a user everywhere rtrec keeps them (erasure on request): the event log, the model's
        per-user state, the inbox's files and every checkpoint. Afterwards the same id is a stranger.
        Weights the user's events moved that other users share are not unlearned (see the README)."""
        return JSONResponse(await run_in_threadpool(lambda: service.forget(user_id)))

    @app.get("/v1/stats", tags=["ops"])
    async def stats() -> Response:
        """Everything ``rtrec inspect`` shows."""
        return JSONResponse(await run_in_threadpool(service.stats))

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus text format."""
        text = await run_in_threadpool(service.metrics_text)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    token = service.token
    if token:
        app.add_middleware(BearerAuth, token=token, read_token=service.read_token)
        _document_tokens(app, read_token=bool(service.read_token))
    return app
