"""`funnelrec report`: one self-contained HTML file a marketing analyst can read.

Sections (each a <section id=...>): overview (data and funnel chart), action-weights, traits
(cards), customer-map (2-D map of profiles coloured by segment), item-map (item vectors coloured
by category), segments (cards) and examples (journey, profile bars, recommendations with their
explanations). Plotly's JavaScript is embedded once, so the file works offline; every string
that comes from the data is HTML-escaped.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from sklearn.decomposition import PCA

from funnelrec.sequences import atomic_write
from funnelrec.stats import funnel_stats

SECTIONS = (
    "overview",
    "action-weights",
    "traits",
    "customer-map",
    "item-map",
    "segments",
    "examples",
)
MAX_POINTS = 3000

CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #fafafa }
header { background: #1f3a5f; color: #fff; padding: 18px 32px }
header h1 { margin: 0; font-size: 24px }
nav a { color: #cfe0ff; margin-right: 14px; font-size: 14px }
section { background: #fff; margin: 18px 32px; padding: 16px 24px; border-radius: 8px;
  box-shadow: 0 1px 3px #0002 }
h2 { margin-top: 0; color: #1f3a5f }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 12px }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px 12px; font-size: 13px }
.card h3 { margin: 0 0 4px; font-size: 15px }
.muted { color: #666 }
table { border-collapse: collapse; font-size: 13px }
td, th { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left }
.bar { display: inline-block; height: 9px; background: #4c78a8; vertical-align: middle }
.pill { display: inline-block; background: #eef3fa; border-radius: 9px; padding: 1px 7px;
  margin: 1px }
"""


def _fig(fig: go.Figure, height: int = 380) -> str:
    fig.update_layout(template="plotly_white", height=height, margin=dict(l=40, r=20, t=40, b=40))
    return fig.to_html(full_html=False, include_plotlyjs=False)


def _overview(stats: dict[str, Any]) -> str:
    fc = stats.get("funnel_customers", {})
    fig = go.Figure(go.Funnel(y=list(fc), x=list(fc.values()), textinfo="value+percent initial"))
    fig.update_layout(title="customers reaching each step")
    acts = stats.get("actions", {})
    rows = "".join(f"<tr><td>{escape(str(a))}</td><td>{n:,}</td></tr>" for a, n in acts.items())
    return (
        f"<p>{stats['customers']:,} customers, {stats['items']:,} items, "
        f"{stats['events']:,} events.</p><table><tr><th>action</th><th>events</th></tr>{rows}"
        f"</table>{_fig(fig, 320)}"
    )


def _action_weights(weights: dict[str, dict[str, float]]) -> str:
    names = list(weights)
    fig = go.Figure()
    fig.add_bar(name="input gate", x=names, y=[weights[a]["input_gate"] for a in names])
    fig.add_bar(name="history weight", x=names, y=[weights[a]["history_weight"] for a in names])
    fig.update_layout(barmode="group", title="learned action weights (negative = disinterest)")
    return (
        "<p class=muted>Learned from the data: the input gate scales how much an event's item "
        "counts in the journey; the history weight is what an event adds to the score of its own "
        "item.</p>" + _fig(fig, 320)
    )


def _trait_cards(cards: list[dict[str, Any]]) -> str:
    out = []
    for c in cards:
        cats = " ".join(
            f"<span class=pill>{escape(x['name'])} {x['z']:+.1f}sd</span>"
            for x in c["top_categories"][:3]
        )
        brands = " ".join(
            f"<span class=pill>{escape(x['name'])}</span>" for x in c["top_brands"][:3]
        )
        tags = " ".join(
            f"<span class=pill>{escape(x['name'])} {x['z']:+.1f}sd</span>"
            for x in c.get("top_tags", [])[:3]
        )
        items = ", ".join(escape(x["item_id"]) for x in c["top_items"][:6])
        rhos = sorted(c["behaviour_correlations"].items(), key=lambda kv: -abs(kv[1]))[:4]
        corr = " ".join(f"<span class=pill>{escape(k)} {v:+.2f}</span>" for k, v in rhos)
        price = (
            f"{100 * c['price_percentile']:.0f}th percentile"
            if c["price_percentile"] is not None
            else "no prices"
        )
        ex = "<br>".join(
            f"{escape(e['customer_id'])} ({e['value']:.2f}): "
            + escape(" → ".join(e["journey"][-6:]))
            for e in c["exemplars"][:2]
        )
        out.append(
            f"<div class=card><h3>{escape(c['trait'])}: {escape(c['name'])}</h3>"
            f"<div class=muted>{escape(c['description'])}</div>"
            f"<div>mean {c['mean']:.2f} · above 0.5 for {100 * c['share_above_half']:.0f}%</div>"
            f"<div>categories: {cats or '—'}</div><div>brands: {brands or '—'}</div>"
            + (f"<div>tags: {tags}</div>" if tags else "")
            + f"<div>price: {price}</div><div>top items: {items}</div>"
            f"<div>correlates with: {corr or '—'}</div><div class=muted>{ex}</div></div>"
        )
    return "<div class=cards>" + "".join(out) + "</div>"


def _map(
    x: np.ndarray,
    colour: np.ndarray,
    labels: list[str],
    title: str,
    hover: np.ndarray,
    rng: np.random.Generator,
) -> str:
    if len(x) < 3:
        return "<p class=muted>too few points for a map</p>"
    idx = rng.choice(len(x), size=min(len(x), MAX_POINTS), replace=False)
    xy = PCA(2, random_state=0).fit_transform(x[idx])
    fig = go.Figure()
    for g in np.unique(colour[idx]):
        sel = colour[idx] == g
        fig.add_scattergl(
            x=xy[sel, 0],
            y=xy[sel, 1],
            mode="markers",
            marker=dict(size=5, opacity=0.7),
            name=labels[g] if 0 <= g < len(labels) else "unknown",
            text=hover[idx][sel],
        )
    fig.update_layout(title=title, xaxis_title="PC 1", yaxis_title="PC 2")
    return _fig(fig, 460)


def _segment_cards(segments: list[dict[str, Any]]) -> str:
    out = []
    for s in segments:
        dom = " ".join(
            f"<span class=pill>{escape(t['name'])} {t['z']:+.1f}sd</span>"
            for t in s["dominant_traits"]
        )
        cats = ", ".join(
            f"{escape(c['category'])} ({100 * c['share']:.0f}%)" for c in s["top_categories"]
        )
        ab = s.get("cart_abandonment")
        out.append(
            f"<div class=card><h3>segment {s['segment']}: {escape(s['name'])}</h3>"
            f"<div>{s['size']:,} customers ({100 * s['share']:.0f}%)</div>"
            f"<div>dominant: {dom}</div>"
            f"<div>bought something: {100 * s['conversion_rate']:.0f}% · removed from cart: "
            f"{100 * s['removal_rate']:.0f}%"
            + (f" · cart abandonment {100 * ab:.0f}%" if ab is not None else "")
            + f"</div><div>top categories: {cats or '—'}</div>"
            f"<div class=muted>e.g. {escape(', '.join(s['examples'][:4]))}</div></div>"
        )
    return "<div class=cards>" + "".join(out) + "</div>"


def _example(model, desc, profiles: pd.DataFrame, customer: str) -> str:
    from funnelrec.profiles import explain_items

    hist = model.history_of(customer)
    vocab = hist.vocab
    journey = " → ".join(
        f"{vocab.action_names[a]} {vocab.item_ids[i]}"
        for i, a in zip(hist.items[-15:], hist.actions[-15:], strict=True)
    )
    names = desc.trait_names()
    row = profiles.loc[customer]
    bars = "".join(
        f"<tr><td>{escape(names.get(c, c.removeprefix('behaviour_')))}</td><td><span class=bar "
        f"style='width:{160 * float(v):.0f}px'></span> {float(v):.2f}</td></tr>"
        for c, v in row.items()
    )
    trait_names = [names.get(t, t) for t in model.trait_names()]
    ids, _ = model.recommend(hist, k=5)
    why = explain_items(model, hist, [int(j) for j in ids[0]], trait_names=trait_names)
    recs = "".join(f"<li>{escape(e['text'])}</li>" for e in why)
    return (
        f"<div class=card><h3>customer {escape(customer)}</h3>"
        f"<div class=muted>{escape(journey)}</div><table>{bars}</table><ol>{recs}</ol></div>"
    )


def build_report(
    model,
    desc,
    profiles: pd.DataFrame,
    labels: np.ndarray,
    path: str | Path,
    title: str = "funnelrec report",
    n_examples: int = 3,
) -> Path:
    """Write the report for a fitted model, its description and its customers' profiles."""
    rng = np.random.default_rng(0)
    hist = model.current_histories()
    stats = funnel_stats(hist)
    vocab = hist.vocab
    seg_labels = [f"segment {s['segment']}: {s['name']}" for s in desc.segments]
    customer_map = _map(
        profiles.to_numpy(dtype=np.float64),
        np.asarray(labels),
        seg_labels,
        "customers (PCA of profiles), coloured by segment",
        profiles.index.to_numpy(),
        rng,
    )
    item_map = _map(
        model.item_embeddings(),
        vocab.item_category.astype(np.int64),
        list(vocab.category_names) or [],
        "items (PCA of item vectors), coloured by category",
        np.asarray(vocab.item_ids),
        rng,
    )
    examples = "".join(
        _example(model, desc, profiles, str(c))
        for c in _example_customers(profiles, labels, n_examples)
    )
    body = {
        "overview": ("Data and funnel", _overview(stats)),
        "action-weights": ("Learned action weights", _action_weights(model.action_weights())),
        "traits": ("Trait cards", _trait_cards(desc.cards)),
        "customer-map": ("Customer map", customer_map),
        "item-map": ("Item map", item_map),
        "segments": ("Segments", _segment_cards(desc.segments)),
        "examples": ("Example customers", examples),
    }
    nav = "".join(f"<a href='#{k}'>{escape(v[0])}</a>" for k, v in body.items())
    sections = "".join(
        f"<section id='{k}'><h2>{escape(v[0])}</h2>{v[1]}</section>" for k, v in body.items()
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{CSS}</style><script>{get_plotlyjs()}</script></head><body>"
        f"<header><h1>{escape(title)}</h1><nav>{nav}</nav></header>{sections}</body></html>"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: Path(p).write_text(page, encoding="utf-8"))
    return path


def _example_customers(profiles: pd.DataFrame, labels: np.ndarray, n: int) -> list[str]:
    """One customer from each of the largest segments (the first listed)."""
    out: list[str] = []
    for s in range(int(np.max(labels)) + 1 if len(labels) else 0):
        members = np.flatnonzero(labels == s)
        if len(members):
            out.append(str(profiles.index[members[0]]))
        if len(out) >= n:
            break
    return out
