"""Item tags: several labels per item (attributes, category paths, brands), read from a side file.

Why: a shop's catalogue often knows more about an item than one category and one brand (the
Amazon review sets carry 1-37 attributes per item). Tags enter the funnel model's item vectors
(the mean of their embeddings), so items that share tags start near each other and an item
without events is scored from its tags.

Accepted sources:

- a JSON object `{"item_id": ["tag", ...], ...}` (`.json` / `.json.gz`; the S3-Rec
  `*_item2attributes.json` files are of this kind); a string value is split on `sep`;
- a table (CSV / TSV / Parquet / JSON Lines, gzipped or not) with an item column (`item_id`,
  `item`, `product_id`, `sku` or `asin`) and a tag column: `tag` (one row per tag) or `tags`
  (several tags in one cell, split on `sep`);
- a mapping or a DataFrame of the same shape, in Python.

Rows that cannot be used (no item id, no tag) are counted and, given `rejects_path`, written
there with their line.

    >>> tags, report = read_item_tags("items.csv")                  # doctest: +SKIP
    >>> report = attach_item_tags(seqs, tags)                        # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from funnelrec.schema import InputError
from funnelrec.sequences import Sequences, atomic_write

ITEM_COLUMNS = ("item_id", "item", "itemid", "product_id", "sku", "asin")
TAG_COLUMNS = ("tag", "tags", "attribute", "attributes", "label", "labels")


def read_item_tags(
    source: str | Path | Mapping[Any, Any] | pd.DataFrame,
    sep: str = "|",
    rejects_path: str | Path | None = None,
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Read item tags; returns ({item id: [tags]}, report with counts and rejected rows)."""
    path = None if isinstance(source, Mapping | pd.DataFrame) else Path(source)
    if path is not None and not path.exists():
        raise InputError("item tag file not found", path=str(path))
    if isinstance(source, Mapping):
        rows = _mapping_rows(source, sep, None)
    elif isinstance(source, pd.DataFrame):
        rows = _table_rows(source, sep, None, first_line=0)
    elif path is not None and (whole := _whole_json(path)) is not None:
        if not isinstance(whole, dict):
            raise InputError(
                "item tag JSON must be an object of item id -> tags",
                path=str(path),
                found=type(whole).__name__,
            )
        rows = _mapping_rows(whole, sep, str(path))
    else:
        df, first_line = _read_table(path)
        rows = _table_rows(df, sep, str(path), first_line)
    bad = rows["reason"] != ""
    good = rows[~bad]
    tags: dict[str, list[str]] = {}
    for item, tag in zip(good["item_id"], good["tag"], strict=True):
        have = tags.setdefault(item, [])
        if tag not in have:  # a tag named twice for an item counts once
            have.append(tag)
    report: dict[str, Any] = {
        "path": None if path is None else str(path),
        "items": len(tags),
        "tags": len({t for v in tags.values() for t in v}),
        "rows_rejected": {str(r): int(n) for r, n in rows["reason"][bad].value_counts().items()},
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
    """Give the items of `seqs` (its vocabulary, shared by every slice cut from it) their tags.

    An item keeps at most `max_tags` tags, in the order given; tags of items the data do not
    hold are counted, not kept. Tag ids follow the sorted tag names.
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


def _whole_json(path: Path) -> Any | None:
    """A `.json` file read whole; None when it is JSON Lines (one object per line)."""
    if ".json" not in [x.lower() for x in path.suffixes]:
        return None
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # a second value after the first: JSON Lines
            return None
        raise InputError(
            f"item tag file is not valid JSON: {exc.msg}", path=str(path), line=exc.lineno
        ) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"item tag file is not UTF-8 text: {exc}", path=str(path)) from None


def _mapping_rows(data: Mapping[Any, Any], sep: str, path: str | None) -> pd.DataFrame:
    items, tags = [], []
    for item, value in data.items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            values = _split(str(value), sep)
        elif isinstance(value, list) and all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
        ):
            values = [str(v).strip() for v in value]
        else:
            raise InputError(
                f"the tags of item '{item}' must be a list of names or a string",
                path=path,
                found=json.dumps(value)[:80],
            )
        values = values or [""]
        items += [str(item).strip()] * len(values)
        tags += values
    rows = pd.DataFrame({"line": pd.array([pd.NA] * len(items), dtype="Int64"), "item_id": items})
    rows["tag"] = tags
    rows["reason"] = _reasons(rows)
    return rows


def _read_table(path: Path) -> tuple[pd.DataFrame, int]:
    """Every cell as text; the file line of the first row (tables with a header: 2)."""
    name = path.name.lower()
    p = str(path).replace("'", "''")
    try:
        con = duckdb.connect()
        if ".parquet" in name:
            return con.sql(f"SELECT * FROM read_parquet('{p}')").df().astype("string"), 1
        if ".jsonl" in name or ".ndjson" in name or ".json" in name:
            return con.sql(f"SELECT * FROM read_json_auto('{p}')").df().astype("string"), 1
        sql = f"SELECT * FROM read_csv('{p}', all_varchar=true, header=true)"
        return con.sql(sql).df(), 2
    except duckdb.Error as exc:
        raise InputError(f"cannot read item tag file: {exc}", path=str(path)) from None


def _table_rows(df: pd.DataFrame, sep: str, path: str | None, first_line: int) -> pd.DataFrame:
    lower = {str(c).strip().lower(): c for c in df.columns}
    item_col = next((lower[c] for c in ITEM_COLUMNS if c in lower), None)
    tag_col = next((lower[c] for c in TAG_COLUMNS if c in lower), None)
    for col, wanted in ((item_col, ITEM_COLUMNS), (tag_col, TAG_COLUMNS)):
        if col is None:
            raise InputError(
                "item tag table lacks a column",
                path=path,
                expected=" or ".join(wanted),
                found=f"columns {[str(c) for c in df.columns]}",
            )
    line = np.arange(len(df), dtype=np.int64) + first_line
    item = df[item_col].astype("string").fillna("").str.strip().to_numpy(dtype=object)
    cells = df[tag_col].astype("string").fillna("").to_numpy(dtype=object)
    split = [_split(c, sep) or [""] for c in cells]
    n = np.array([len(v) for v in split])
    rows = pd.DataFrame(
        {
            "line": pd.array(np.repeat(line, n) if first_line else [pd.NA] * n.sum(), "Int64"),
            "item_id": np.repeat(item, n),
            "tag": [t for v in split for t in v],
        }
    )
    rows["reason"] = _reasons(rows)
    return rows


def _split(text: str, sep: str) -> list[str]:
    return [t.strip() for t in str(text).split(sep) if t.strip()]


def _reasons(rows: pd.DataFrame) -> np.ndarray:
    return np.select(
        [rows["item_id"].to_numpy(dtype=object) == "", rows["tag"].to_numpy(dtype=object) == ""],
        ["no item id", "no tag"],
        default="",
    )
