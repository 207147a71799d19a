"""Plotly charts written as self-contained HTML (the JavaScript is embedded: works offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from funnelrec.sequences import atomic_write


def metrics_chart(results: dict[str, Any], path: str | Path, part: str = "test") -> Path:
    """Grouped bars of HR@10 and NDCG@10 per model, from an `evaluate` results dict."""
    models = results["models"]
    names = sorted(models, key=lambda m: models[m][part]["metrics"]["NDCG@10"])
    fig = go.Figure()
    for metric in ("HR@10", "NDCG@10"):
        fig.add_bar(name=metric, x=names, y=[models[m][part]["metrics"][metric] for m in names])
    fig.update_layout(
        barmode="group",
        template="plotly_white",
        title=(
            f"{results.get('dataset', '')}: {part} {results['split']['protocol']} split, "
            f"target {results['split']['target']} (full ranking, "
            f"{results['split'][part + '_cases']} cases)"
        ),
        yaxis_title="metric",
        xaxis_title="model",
    )
    path = Path(path)
    atomic_write(path, lambda p: fig.write_html(p, include_plotlyjs=True))
    return path
