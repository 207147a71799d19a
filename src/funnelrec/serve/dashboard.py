"""The dashboard at `/`: one page over the JSON API (overview, traits, segments, customer).

Plotly's JavaScript is served from the package (`/static/plotly.js`), so it works offline.
Every string from the data is written with `textContent`, never as HTML.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response


@cache
def _page() -> str:
    return files("funnelrec.serve").joinpath("dashboard.html").read_text(encoding="utf-8")


@cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


def mount(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return _page()

    @app.get("/static/plotly.js", include_in_schema=False)
    def plotly_js() -> Response:
        return Response(
            _plotly_js(),
            media_type="application/javascript",
            headers={"Cache-Control": "max-age=86400"},
        )
