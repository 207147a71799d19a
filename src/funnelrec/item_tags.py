"""Item tags: several labels per item (attributes, category paths, brands), read from a side file.

Why: a shop's catalogue often knows more about an item than one category and one brand (the
Amazon review sets carry 1-37 attributes per item). Tags enter the funnel model's item vectors
(the mean of their embeddings), so items that share tags start near each other and an item
without events is scored from its tags.

Accepted sources:

- a JSON object `{"item_id": ["tag", ...], ...}` (`.json` / `.json.gz`; the S3-Rec
  `*_item2attributes.json` files are of this kind); a string value is split on `sep`;
- a table, read like an events file (CSV / TSV / Parquet / JSON Lines / a JSON array of
  objects, gzipped or not), with an item column (`item_id`, `item`, `itemid`, `product_id`,
  `sku` or `asin`) and one tag column: `tag` (one row per tag) or `tags` (a list, or several
  tags in one cell split on `sep`);
- a mapping or a DataFrame of the same shape, in Python.

Rows that cannot be used (no item id, no tag, a line the reader could not parse) are counted
and, given `rejects_path`, written there with their file line and the reason.

    >>> tags, report = read_item_tags("items.csv")                  # doctest: +SKIP
    >>> report = attach_item_tags(seqs, tags)                        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from funnelrec.ingest.reader import _id_expr
from funnelrec.ingest.sources import is_json, open_source, sql_ident, sql_str
from funnelrec.schema import InputError
from funnelrec.sequences import Sequences, atomic_write

ITEM_COLUMNS = ("item_id", "item", "itemid", "product_id", "sku", "asin")
TAG_COLUMNS = ("tag", "tags", "attribute", "attributes", "label", "labels")
_FLOAT_ID = re.compile(r"^(\d+)\.0+$")  # as event ingestion reads ids: "266079.0" is 266079


def read_item_tags(
    source: str | Path | Mapping[Any, Any] | pd.DataFrame,
    sep: str = "|",
    rejects_path: str | Path | None = None,
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Read item tags; returns ({item id: [tags]}, report with counts and rejected rows)."""
    name = "<mapping>" if isinstance(source, Mapping) else "<DataFrame>"
    if isinstance(source, str | Path):
        name = str(source)
        if not Path(source).is_file():
            raise InputError("item tag file not found", path=name)
    mapping = source if isinstance(source, Mapping) else _json_mapping(source)
    rows = _mapping_rows(mapping, sep) if mapping is not None else _table_rows(source, sep, name)
    bad = rows["reason"] != ""
    tags: dict[str, list[str]] = {}
    for item, tag in zip(rows["item_id"][~bad], rows["tag"][~bad], strict=True):
        tags.setdefault(item, []).append(tag)
    n_pairs = int((~bad).sum())
    tags = {item: list(dict.fromkeys(v)) for item, v in tags.items()}
    report: dict[str, Any] = {
        "path": name,
        "items": len(tags),
        "tags": len({t for v in tags.values() for t in v}),
        "rows_rejected": {str(r): int(n) for r, n in rows["reason"][bad].value_counts().items()},
        "duplicates_dropped": n_pairs - sum(len(v) for v in tags.values()),
        "rejects_path": None,
    }
    if bad.any() and rejects_path is not None:
        rejects_path = Path(rejects_path)
        atomic_write(rejects_path, lambda p: rows[bad].to_csv(p, index=False))
        report["rejects_path"] = str(rejects_path)
    return tags, report


def attach_item_tags(
    seqs: Sequences, tags: Mapping[str, Iterable[str]], max_tags: int = 32
) -> dict[str, Any]:
    """Give the items of `seqs` their tags, replacing any given before.

    The tags go on the vocabulary, which every slice cut from `seqs` shares: attach them
    before fitting (a fitted model reads the tags it was fitted with). An item keeps at most
    `max_tags` tags, in the order given; tags of items the data do not hold are counted, not
    kept. Tag ids follow the sorted tag names.
    """
    vocab = seqs.vocab
    per_item: list[list[str]] = [[] for _ in range(vocab.n_items)]
    unknown = truncated = 0
    for raw, item_tags in tags.items():
        i = vocab.item_index(str(raw))
        if i < 0:
            unknown += 1
            continue
        names = list(dict.fromkeys(str(t) for t in item_tags))
        truncated += max(len(names) - max_tags, 0)
        per_item[i] = names[:max_tags]
    names = sorted({t for v in per_item for t in v})
    index = {t: k for k, t in enumerate(names)}
    counts = np.array([len(v) for v in per_item], dtype=np.int64)
    vocab.item_tag_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    vocab.item_tag_ids = np.array([index[t] for v in per_item for t in v], dtype=np.int32)
    vocab.tag_names = names
    return {
        "items_with_tags": int((counts > 0).sum()),
        "items_without_tags": int((counts == 0).sum()),
        "tags": len(names),
        "tagged_items_not_in_data": unknown,
        "tags_cut_by_max_tags": truncated,
    }


def _json_mapping(source: Any) -> Mapping[Any, Any] | None:
    """A `.json` file that is one object of item id -> tags; None for anything else (a
    table, JSON Lines, an array of records, or one record with item and tag keys)."""
    if not isinstance(source, str | Path):
        return None
    path = Path(source)
    if ".json" not in [s.lower() for s in path.suffixes]:
        return None
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as f:
            text = f.read()
    except (ValueError, OSError):  # not UTF-8 text, or not gzip: the table reader says why
        return None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        first = text.lstrip().split("\n", 1)[0]
        if exc.msg == "Extra data" or is_json(first) or not first.startswith("{"):
            return None  # JSON Lines (a bad line among them is a reject), or not JSON at all
        raise InputError(
            f"item tag file is not valid JSON: {exc.msg}", path=str(path), line=exc.lineno
        ) from None
    if not isinstance(whole, dict) or (_pick(whole, ITEM_COLUMNS) and _pick(whole, TAG_COLUMNS)):
        return None
    return whole


def _mapping_rows(data: Mapping[Any, Any], sep: str) -> pd.DataFrame:
    rows: list[tuple[Any, ...]] = []
    for item, value in data.items():
        key = _item_id(item)
        tags, why = _cell_tags(value, sep)
        rows += [(pd.NA, key, t, _reason(key, t), "") for t in tags] or [
            (pd.NA, key, "", why or _reason(key, ""), json.dumps(value)[:200])
        ]
    return _frame(rows)


def _table_rows(source: Any, sep: str, name: str) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        src = open_source(con, source, sequences=False)
        item_col = _pick(src.columns, ITEM_COLUMNS)
        tag_col = _pick(src.columns, TAG_COLUMNS)
        for col, wanted in ((item_col, ITEM_COLUMNS), (tag_col, TAG_COLUMNS)):
            if col is None:
                raise InputError(
                    "item tag table lacks a column",
                    path=name,
                    expected=" or ".join(wanted),
                    found=f"columns {src.columns}",
                )
        others = [c for c in src.columns if c != tag_col and _pick([c], TAG_COLUMNS)]
        if others:
            raise InputError(
                "item tag table has more than one tag column",
                path=name,
                expected="one of them (rename the others)",
                found=f"{tag_col!r} and {others}",
            )
        table, tag_sql = "raw_src", sql_ident(tag_col)
        if src.format == "parquet" and tag_col in src.nested:  # a list column: as JSON
            table = (
                "(SELECT file_row_number + 1 AS row_no, * FROM "
                f"read_parquet({sql_str(name)}, file_row_number = true))"
            )
            tag_sql = f"CAST(to_json({tag_sql}) AS VARCHAR)"
        df = con.execute(
            f"SELECT row_no, {_id_expr({'item_id': item_col}, 'item_id')} AS item, "
            f"CAST({tag_sql} AS VARCHAR) AS tag FROM {table} ORDER BY row_no"
        ).df()
        lines = src.line_of(df["row_no"].to_numpy()) if len(df) else np.zeros(0, np.int64)
    finally:
        con.close()
    rows: list[tuple[Any, ...]] = []
    for line, item, cell in zip(lines, df["item"], df["tag"], strict=True):
        tags, why = _cell_tags(cell, sep)
        key = "" if item is None or pd.isna(item) else str(item)
        rows += [(int(line), key, t, _reason(key, t), "") for t in tags] or [
            (int(line), key, "", why or _reason(key, ""), "" if pd.isna(cell) else str(cell))
        ]
    # Lines the reader itself could not parse (a stray quote, malformed JSON) count too.
    rows += [
        (int(r.line), "", "", str(r.reason), str(getattr(r, "raw", "")))
        for r in src.parse_rejects.itertuples()
    ]
    return _frame(rows)


def _cell_tags(value: Any, sep: str) -> tuple[list[str], str]:
    """The tags in one cell or JSON value, and why none could be read ("" = fine)."""
    if isinstance(value, str) and value.strip().startswith("["):
        with contextlib.suppress(ValueError):  # a list written as JSON (JSON Lines, Parquet)
            value = json.loads(value)
    if value is None or (not isinstance(value, list | dict) and pd.isna(value)):
        return [], ""
    if isinstance(value, bool) or not isinstance(value, str | int | float | list):
        return [], "tags are not a list of names"
    if isinstance(value, list):
        if any(isinstance(v, bool | list | dict) for v in value):
            return [], "tags are not a list of names"
        return [str(v).strip() for v in value if v is not None and str(v).strip()], ""
    return [t.strip() for t in str(value).split(sep) if t.strip()], ""


def _reason(item: str, tag: str) -> str:
    return "no item id" if not item else "no tag" if not tag else ""


def _item_id(raw: Any) -> str:
    return _FLOAT_ID.sub(r"\1", str(raw).strip())


def _pick(names: Iterable[Any], wanted: tuple[str, ...]) -> str | None:
    """The first name among `names` that is one of `wanted` (case and spaces ignored)."""
    lower = {str(n).strip().lower(): n for n in names}
    return next((lower[w] for w in wanted if w in lower), None)


def _frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=["line", "item_id", "tag", "reason", "raw"])
    out["line"] = out["line"].astype("Int64")
    return out
