"""Known raw layouts of public funnel logs and their detection.

A layout says which raw column feeds each canonical column and how raw action values translate.
Detection looks only at column names (or, for header-less files, at the shape of the first rows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from funnelrec.schema import ACTION_SYNONYMS, REQUIRED_COLUMNS


@dataclass(frozen=True)
class Layout:
    """How one raw layout maps onto canonical events.

    `columns` maps a canonical column to a raw column name, or to a tuple of names whose first
    non-empty value is used. `kind` is "events" for one event per row, "sequence_lines" for one
    customer per line (`user item item ...`) and "sequence_pairs" for `user item` per line; the
    two sequence kinds carry order only.
    """

    name: str
    columns: dict[str, str | tuple[str, ...]]
    actions: dict[str, str] = field(default_factory=dict)
    kind: str = "events"
    timestamp_unit: str = "auto"
    headerless_names: tuple[str, ...] | None = None
    constant_action: str | None = None
    description: str = ""


CANONICAL = Layout(
    name="canonical",
    columns={
        c: c
        for c in (
            "customer_id",
            "timestamp",
            "action",
            "item_id",
            "session_id",
            "category",
            "brand",
            "price",
        )
    },
    description="funnelrec's own columns",
)

REES46 = Layout(
    name="rees46",
    columns={
        "customer_id": "user_id",
        "timestamp": "event_time",
        "action": "event_type",
        "item_id": "product_id",
        "session_id": "user_session",
        "category": ("category_code", "category_id"),
        "brand": "brand",
        "price": "price",
    },
    actions={
        "view": "view",
        "cart": "add_cart",
        "remove_from_cart": "remove_cart",
        "purchase": "purchase",
    },
    description="REES46 multi-category store (event_time, event_type, product_id, user_session)",
)

RETAILROCKET = Layout(
    name="retailrocket",
    columns={
        "customer_id": "visitorid",
        "timestamp": "timestamp",
        "action": "event",
        "item_id": "itemid",
    },
    actions={"view": "view", "addtocart": "add_cart", "transaction": "purchase"},
    timestamp_unit="ms",
    description="RetailRocket events.csv (visitorid, event, itemid, transactionid; ms timestamps)",
)

TAOBAO = Layout(
    name="taobao",
    columns={
        "customer_id": "user_id",
        "timestamp": "timestamp",
        "action": "behavior_type",
        "item_id": "item_id",
        "category": "category_id",
    },
    actions={"pv": "view", "cart": "add_cart", "buy": "purchase"},
    timestamp_unit="s",
    headerless_names=("user_id", "item_id", "category_id", "behavior_type", "timestamp"),
    description="Taobao UserBehavior (user_id, item_id, category_id, behavior_type, timestamp)",
)

JDATA = Layout(
    name="jdata",
    columns={
        "customer_id": "user_id",
        "timestamp": "time",
        "action": "type",
        "item_id": "sku_id",
        "category": "cate",
        "brand": "brand",
    },
    # JData 2017 action types: 1 browse, 2 add to cart, 3 remove from cart, 4 order,
    # 5 follow, 6 click. Follow and click stay types of their own.
    actions={
        "1": "view",
        "2": "add_cart",
        "3": "remove_cart",
        "4": "purchase",
        "5": "follow",
        "6": "click",
    },
    description="JD.com JData 2017 actions (user_id, sku_id, time, model_id, type, cate, brand)",
)

SEQUENCE_LINES = Layout(
    name="sequence_lines",
    columns={"customer_id": "customer_id", "item_id": "item_id", "timestamp": "timestamp"},
    kind="sequence_lines",
    constant_action="purchase",
    description="one customer per line: `user item item ...` (S3-Rec files; order only)",
)

SEQUENCE_PAIRS = Layout(
    name="sequence_pairs",
    columns={"customer_id": "customer_id", "item_id": "item_id", "timestamp": "timestamp"},
    kind="sequence_pairs",
    constant_action="purchase",
    description="one `user item` pair per line in order (SASRec files; order only)",
)

LAYOUTS: dict[str, Layout] = {
    lay.name: lay
    for lay in (CANONICAL, REES46, RETAILROCKET, TAOBAO, JDATA, SEQUENCE_LINES, SEQUENCE_PAIRS)
}

# Detection order matters: the most specific signatures first.
_SIGNATURES: list[tuple[Layout, set[str]]] = [
    (REES46, {"event_time", "event_type", "product_id", "user_id"}),
    (RETAILROCKET, {"visitorid", "event", "itemid", "timestamp"}),
    (TAOBAO, {"user_id", "item_id", "behavior_type", "timestamp"}),
    (JDATA, {"user_id", "sku_id", "time", "type"}),
    (CANONICAL, set(REQUIRED_COLUMNS)),
]

_INT = re.compile(r"^\d+$")


def detect_from_columns(columns: list[str]) -> Layout | None:
    """Return the known layout whose signature columns are all present, or None."""
    present = {c.strip().lower() for c in columns}
    for layout, signature in _SIGNATURES:
        if signature <= present:
            return layout
    return None


def nearest_layout(columns: list[str]) -> Layout | None:
    """The layout missing exactly one of its (3+) signature columns, if just one is that close.

    Used only to word the error: "layout X, missing column Y" helps more than "unrecognised".
    """
    present = {c.strip().lower() for c in columns}
    close = [lay for lay, sig in _SIGNATURES if len(sig) >= 3 and len(sig - present) == 1]
    return close[0] if len(close) == 1 else None


def detect_headerless(
    lines: list[str], delimiter: str | None = None, named: Layout | None = None
) -> tuple[Layout, str] | None:
    """Header-less Taobao rows (five fields, numeric ids, a Taobao behaviour) and their
    delimiter; or `named` (a layout the user gave) when the first line is not its header.

    Tolerant: any of , tab ; | as delimiter, a byte-order mark, upper-case behaviours and
    one bad row in ten do not hide the layout (the bad rows become rejects).
    """
    rows_text = [ln.lstrip("\ufeff") for ln in lines if ln.strip()]
    if not rows_text:
        return None
    delims = [delimiter] if delimiter else [",", "\t", ";", "|"]
    if named is not None:
        # Header-less only when the first line is data: its first fields are numeric ids
        # (a header with other names than the layout's is still a header, read by --map).
        if not named.headerless_names:
            return None
        d = max(delims, key=lambda x: rows_text[0].count(x))
        first = [v.strip().strip('"') for v in rows_text[0].split(d)]
        if len(first) >= 3 and all(_INT.match(v) for v in first[:3]):
            return named, d
        return None
    behaviours = set(TAOBAO.actions) | {"fav"}

    def fits(line: str, d: str) -> bool:
        row = [v.strip() for v in line.split(d)]
        return (
            len(row) == 5
            and row[3].lower() in behaviours
            and all(_INT.match(v) for v in (row[0], row[1], row[2], row[4]))
        )

    for d in delims:
        good = [fits(line, d) for line in rows_text]
        n = len(rows_text)
        # The first line must fit (otherwise it is a header); one later line in ten may not.
        if good[0] and sum(good) > n / 2 and sum(good) >= n - max(1, n // 10):
            return TAOBAO, d
    return None


def detect_sequence_text(lines: list[str]) -> Layout | None:
    """Recognise the two order-only benchmark layouts from whitespace-separated integer lines."""
    rows = [ln.split() for ln in lines if ln.strip()]
    if not rows or not all(all(_INT.match(tok) for tok in row) for row in rows):
        return None
    # A stray line with a customer and no item (one, or 1 in 10) does not hide the layout;
    # it becomes a reject with its line when the file is read.
    full = [r for r in rows if len(r) >= 2]
    if not full or len(rows) - len(full) > max(1, len(rows) // 10):
        return None
    rows = full
    lengths = {len(r) for r in rows}
    if lengths == {2}:
        return SEQUENCE_PAIRS
    if min(lengths) < 2:
        return None
    # A headerless numeric event table (customer, item, epoch time, action code) is also
    # lines of integers: the same number on every line, one column of them epoch times.
    if len(lengths) == 1 and min(lengths) >= 3:
        width = min(lengths)
        if any(all(_epoch_like(row[c]) for row in rows) for c in range(1, width)):
            return None
    return SEQUENCE_LINES


def _epoch_like(tok: str) -> bool:
    """Unix seconds or milliseconds between 2001 and 2286."""
    v = int(tok)
    return 10**9 <= v < 10**10 or 10**12 <= v < 10**13


def translate_action(raw: str, layout: Layout, user_map: dict[str, str]) -> str:
    """Translate one raw action value: user map, then the layout's own, then known synonyms."""
    key = raw.strip()
    if key in user_map:
        return user_map[key]
    folded = {k.strip().lower(): v for k, v in user_map.items()}
    if key.lower() in folded:  # `--action checkout=purchase` also maps 'Checkout'
        return folded[key.lower()]
    if key in layout.actions:
        return layout.actions[key]
    low = key.lower()
    return ACTION_SYNONYMS.get(low, low)
