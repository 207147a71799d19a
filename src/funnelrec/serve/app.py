"""The HTTP service: `create_app(model_dir, store_path)` -> FastAPI app. Routes stay thin.

Writes (`POST /events`) and admin (`POST /admin/reload`) need the API key from
`FUNNELREC_API_KEY` in an `X-API-Key` header (constant-time compare); without a configured key
they answer 401. Reads are open unless `keyed_reads`. JSON responses never echo raw input
into HTML; the dashboard writes every string with `textContent`.
"""

from __future__ import annotations

import hmac
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from funnelrec.schema import FunnelrecError
from funnelrec.serve.live import Live
from funnelrec.serve.store import EventStore

MAX_BATCH = 1000
MAX_BODY_BYTES = 1_000_000
ID = Annotated[str, Field(min_length=1, max_length=200)]


class EventIn(BaseModel):
    """One event, canonical fields. `timestamp`: ISO string or Unix seconds; default now."""

    model_config = ConfigDict(extra="forbid")
    customer_id: ID
    item_id: ID
    action: Annotated[str, Field(min_length=1, max_length=50)]
    timestamp: float | str | None = None
    category: Annotated[str, Field(max_length=200)] | None = None
    brand: Annotated[str, Field(max_length=200)] | None = None
    price: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _not_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):  # JSON true would otherwise pass as 1.0 (1970)
            raise ValueError("not a timestamp")
        return v

    @field_validator("timestamp")
    @classmethod
    def _seconds(cls, v: float | str | None) -> float | None:
        if v is None:
            return None
        if isinstance(v, str):
            try:
                ts = pd.Timestamp(v)
            except (ValueError, TypeError, OverflowError) as exc:
                raise ValueError("not an ISO timestamp") from exc
            if ts is pd.NaT:
                raise ValueError("not a timestamp")
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts
            v = ts.timestamp()
        # One range for numbers and dates alike: 1970 up to the year 5000 (later seconds
        # would read as milliseconds downstream).
        if not (0 <= v < 1e11):
            raise ValueError("a time between 1970 and the year 5000 (Unix seconds or ISO)")
        return float(v)


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_BATCH)]


class Metrics:
    """Request counts and latencies for `GET /metrics` (Prometheus text format)."""

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.hist: dict[str, list[int]] = defaultdict(lambda: [0] * (len(self.BUCKETS) + 1))
        self.sums: Counter = Counter()

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.counts[(route, method, status)] += 1
        key = f"{method} {route}"
        h = self.hist[key]
        for i, b in enumerate(self.BUCKETS):
            if seconds <= b:
                h[i] += 1
        h[-1] += 1
        self.sums[key] += seconds

    def text(self, extra: dict[str, float], version: str) -> str:
        lines = ["# TYPE funnelrec_requests_total counter"]
        for (route, method, status), n in sorted(self.counts.items()):
            lab = f'route="{route}",method="{method}",status="{status}"'
            lines.append(f"funnelrec_requests_total{{{lab}}} {n}")
        lines.append("# TYPE funnelrec_request_seconds histogram")
        for key, h in sorted(self.hist.items()):
            method, route = key.split(" ", 1)
            lab = f'route="{route}",method="{method}"'
            for b, n in zip(self.BUCKETS, h, strict=False):
                lines.append(f'funnelrec_request_seconds_bucket{{{lab},le="{b}"}} {n}')
            lines.append(f'funnelrec_request_seconds_bucket{{{lab},le="+Inf"}} {h[-1]}')
            lines.append(f"funnelrec_request_seconds_sum{{{lab}}} {self.sums[key]:.6f}")
            lines.append(f"funnelrec_request_seconds_count{{{lab}}} {h[-1]}")
        for name, v in extra.items():
            lines += [f"# TYPE funnelrec_{name} gauge", f"funnelrec_{name} {v}"]
        lines.append(f'funnelrec_model_info{{version="{version}"}} 1')
        return "\n".join(lines) + "\n"


def create_app(
    model_dir: str | Path,
    store_path: str | Path,
    api_key: str | None = None,
    keyed_reads: bool = False,
) -> FastAPI:
    """Build the service. `api_key` defaults to the FUNNELREC_API_KEY environment variable."""
    key = api_key if api_key is not None else os.environ.get("FUNNELREC_API_KEY")
    store = EventStore(store_path)
    live = Live(model_dir, store)
    metrics = Metrics()
    app = FastAPI(title="funnelrec", version="0.1.0")
    app.state.live = live

    def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if not key:
            raise HTTPException(401, "writes are disabled: no FUNNELREC_API_KEY is configured")
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), key.encode()):
            raise HTTPException(401, "missing or wrong X-API-Key")

    def read_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if keyed_reads:
            require_key(x_api_key)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Where and why, never the input itself: the default echoes it back, which can be
        # unencodable (NaN) or a string meant for someone else's HTML.
        errors = [
            {
                "loc": [str(x) for x in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(FunnelrecError)
    async def _user_error(request: Request, exc: FunnelrecError) -> JSONResponse:
        status = 404 if "unknown" in str(exc) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    # Every route runs on the event loop, one request at a time: reads are cache lookups and
    # a write is a few milliseconds of numpy/torch. Handing writes to the thread pool made
    # them wait behind a busy loop for the GIL (a write took 300 ms under read load).
    @app.post("/events", dependencies=[Depends(require_key)])
    async def post_events(body: EventIn | Batch) -> dict[str, Any]:
        """One event or {"events": [...]} (at most 1000); per-event accepted / rejected."""
        events = body.events if isinstance(body, Batch) else [body]
        now = time.time()
        rows = [
            {**e.model_dump(), "timestamp": e.timestamp if e.timestamp is not None else now}
            for e in events
        ]
        results = live.add_events(rows)
        return {
            "accepted": sum(r["accepted"] for r in results),
            "rejected": sum(not r["accepted"] for r in results),
            "results": results,
        }

    @app.get("/customers/{customer_id:path}/profile", dependencies=[Depends(read_key)])
    async def profile(customer_id: str) -> dict[str, Any]:
        return live.profile(customer_id)

    @app.get("/customers/{customer_id:path}/recommendations", dependencies=[Depends(read_key)])
    async def recommendations(
        customer_id: str,
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        explain: bool = False,
    ) -> dict[str, Any]:
        return live.recommendations(customer_id, k, explain)

    @app.get("/customers/{customer_id:path}/similar", dependencies=[Depends(read_key)])
    async def similar(customer_id: str, k: Annotated[int, Query(ge=1, le=100)] = 10) -> list:
        return live.similar(customer_id, k)

    @app.get("/customers/{customer_id:path}/journey", dependencies=[Depends(read_key)])
    async def journey(customer_id: str) -> list:
        return live.journey(customer_id)

    @app.get("/items/{item_id:path}/similar", dependencies=[Depends(read_key)])
    async def similar_items(item_id: str, k: Annotated[int, Query(ge=1, le=100)] = 10) -> list:
        return live.similar_items(item_id, k)

    @app.get("/traits", dependencies=[Depends(read_key)])
    async def traits() -> list:
        return live.traits_cards()

    @app.get("/segments", dependencies=[Depends(read_key)])
    async def segments() -> list:
        return live.segments()

    @app.get("/segments/map", dependencies=[Depends(read_key)])
    async def segment_map() -> dict[str, Any]:
        """2-D map of customers (PCA of their profiles), with each one's segment."""
        return live.segment_map()

    @app.get("/overview", dependencies=[Depends(read_key)])
    def overview() -> dict[str, Any]:
        return live.overview()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "events_stored": store.count(), **live.health()}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> str:
        h = live.health()
        extra = {"events_stored": store.count(), "customers": h["customers"]}
        return metrics.text(extra, h["model_version"])

    @app.post("/admin/reload", dependencies=[Depends(require_key)])
    def reload() -> dict[str, Any]:
        """Load the model folder again (e.g. after `funnelrec fit` wrote a new version)."""
        return {"model_version": live.reload()}

    from funnelrec.serve.dashboard import mount

    mount(app)
    app.add_middleware(_LimitAndMeasure, metrics=metrics)
    return app


class _LimitAndMeasure:
    """Plain ASGI middleware: refuse bodies over MAX_BODY_BYTES (declared or streamed) with
    413, and time every request for /metrics (cheaper than Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}
        headers = dict(scope.get("headers") or [])
        size = headers.get(b"content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY_BYTES):
            response = JSONResponse(
                {"detail": f"body larger than {MAX_BODY_BYTES} bytes"}, status_code=413
            )
            await response(scope, receive, send)
            status["code"] = 413
        else:
            seen = {"bytes": 0}

            async def limited_receive():
                message = await receive()
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > MAX_BODY_BYTES:
                    raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
                return message

            async def send_status(message):
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            await self.app(scope, limited_receive, send_status)
        route = scope.get("route")
        path = getattr(route, "path", "unmatched")
        self.metrics.observe(path, scope["method"], status["code"], time.perf_counter() - started)
