"""Raw file -> validated canonical events in DuckDB, with every dropped row counted.

The result is a DuckDB table `events(row_no, customer_id, ts, action, item_id, session_id,
category, brand, price)` where `ts` is seconds since the epoch (or the position in the file for
order-only layouts). Rows that cannot be used go to a rejects file with their line and reason.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from funnelrec.config import IngestConfig
from funnelrec.ingest.layouts import (
    LAYOUTS,
    Layout,
    detect_from_columns,
    nearest_layout,
    translate_action,
)
from funnelrec.ingest.sources import (
    RawSource,
    file_lines_text,
    open_source,
    sql_ident,
    sql_str,
)
from funnelrec.schema import CANONICAL_ACTIONS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, InputError

_UNIT_DIVISORS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
_UNIT_NAMES = {
    "s": "Unix seconds",
    "ms": "Unix milliseconds",
    "us": "Unix microseconds",
    "ns": "Unix nanoseconds",
}
FUTURE_TOLERANCE_S = 86_400.0
PLAUSIBLE_SINCE = 631_152_000  # 1990-01-01 UTC: earlier e-commerce events are a unit slip


@dataclass
class IngestReport:
    """What happened to every row, for `funnelrec inspect` and the summary printed after reads."""

    path: str
    format: str
    layout: str
    layout_detected: bool
    layout_description: str
    columns_found: list[str]
    column_map: dict[str, str]
    timestamps: str
    has_time: bool
    rows_read: int = 0
    rows_rejected: dict[str, int] = field(default_factory=dict)
    duplicates_dropped: int = 0
    rows_used: int = 0
    input_sorted: bool = True
    actions: dict[str, int] = field(default_factory=dict)
    action_translation: dict[str, str] = field(default_factory=dict)
    rejects_path: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def n_rejected(self) -> int:
        return int(sum(self.rows_rejected.values()))


@dataclass
class EventTable:
    """Validated events living in a DuckDB connection (table `events`), plus the report."""

    con: duckdb.DuckDBPyConnection
    report: IngestReport
    has_session_ids: bool
    has_time: bool
    rejects: pd.DataFrame | None = None  # line, reason, raw (also in the rejects file)
    source: RawSource | None = None

    def file_lines(self, row_no: np.ndarray) -> np.ndarray:
        """The file line of each event's row (`row_no` of the `events` table)."""
        if self.source is not None:
            return self.source.line_of(row_no)
        return np.asarray(row_no, dtype=np.int64)

    def add_rejects(self, more: pd.DataFrame, path: str | Path) -> None:
        """Rows a later step could not use (line, reason, raw): written beside the
        reader's rejects, so that one file lists every row that was left out."""
        parts = [df for df in (self.rejects, more) if df is not None and len(df)]
        if not parts:
            return
        self.rejects = pd.concat(parts, ignore_index=True).sort_values("line", kind="stable")
        _write_atomic_csv(self.rejects, Path(path))
        self.report.rejects_path = str(path)

    def df(self) -> pd.DataFrame:
        """The events as a pandas DataFrame (small data only)."""
        return self.con.execute("SELECT * FROM events ORDER BY customer_id, ts, row_no").df()


def _event_store(path: Path) -> pd.DataFrame:
    """The events of a `funnelrec serve` store (SQLite), canonical columns, stored order."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return pd.read_sql_query(
                "SELECT customer_id, timestamp, action, item_id, category, brand, price "
                "FROM events ORDER BY id",
                db,
            )
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        raise InputError(f"not a funnelrec event store: {exc}", path=str(path)) from exc


def read_events(
    source: str | Path | pd.DataFrame,
    config: IngestConfig | None = None,
    rejects_path: str | Path | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> EventTable:
    """Read a funnel log of any supported layout into validated canonical events.

    Parameters
    ----------
    source : path to CSV / CSV.gz / TSV / Parquet / JSON Lines / sequence text, or a DataFrame.
    config : layout, column and action maps, strictness and limits (see `IngestConfig`).
    rejects_path : where to write rejected rows (CSV). Nothing is written when all rows are used.

    Examples
    --------
    >>> from funnelrec.ingest import read_events
    >>> table = read_events("events.csv")          # doctest: +SKIP
    >>> table.report.layout, table.report.rows_used  # doctest: +SKIP
    ('rees46', 1000000)
    """
    config = config or IngestConfig()
    started = time.perf_counter()
    as_path = isinstance(source, str | Path)
    if rejects_path is not None and as_path and _same_file(rejects_path, source):
        raise InputError(
            "the rejects file would overwrite the input", path=str(source), found=str(rejects_path)
        )
    if isinstance(source, str | Path) and Path(source).suffix.lower() in (".sqlite", ".db"):
        if not Path(source).is_file():
            raise InputError("file not found", path=str(source))
        source = _event_store(Path(source))
    con = con or duckdb.connect()
    con.execute(f"SET memory_limit = {sql_str(config.memory_limit)}")
    con.execute("SET TimeZone = 'UTC'")
    named = LAYOUTS.get(config.layout)
    as_sequences = named if named is not None and named.kind != "events" else None
    src = open_source(
        con,
        source,
        config.delimiter,
        config.has_header,
        sequences=as_sequences or (config.layout == "auto" and not config.column_map),
        wanted=tuple(v for v in config.column_map.values() if isinstance(v, str)),
        named=named if named is not None and named.kind == "events" else None,
    )
    layout, detected = _resolve_layout(src, config)
    colmap = _resolve_columns(src, layout, config)
    report = IngestReport(
        path=src.path,
        format=src.format,
        layout=layout.name,
        layout_detected=detected,
        layout_description=layout.description,
        columns_found=src.columns,
        column_map={k: (v if isinstance(v, str) else "|".join(v)) for k, v in colmap.items()},
        timestamps="",
        has_time=layout.kind == "events",
    )
    report.notes.extend(src.notes)
    _check_columns(src, colmap, report)
    report.rows_read = int(con.execute("SELECT count(*) FROM raw_src").fetchone()[0])
    report.rows_read += len(src.parse_rejects)
    if report.rows_read == 0:
        raise InputError(
            "no data rows: the file has a header but no events",
            path=src.path,
            expected="at least one event row",
            found=f"columns {src.columns}",
        )

    ts_expr = _timestamp_expression(con, src, layout, colmap, config, report)
    action_expr, mapped = _action_expression(con, src, layout, colmap, config, report)
    price_style = _price_style(con, _col(colmap, "price")) if "price" in colmap else "plain"
    _stage(con, colmap, ts_expr, action_expr, mapped, report.has_time, price_style)
    if report.has_time:
        _reject_stray_early(con)
    counts = con.execute(
        "SELECT reason, count(*) FROM staged WHERE reason IS NOT NULL GROUP BY reason"
    ).fetchall()
    for reason, n in [*src.parse_rejects["reason"].value_counts().items(), *counts]:
        report.rows_rejected[str(reason)] = report.rows_rejected.get(str(reason), 0) + int(n)
    _price_notes(con, price_style, report)
    valid = int(con.execute("SELECT count(*) FROM staged WHERE reason IS NULL").fetchone()[0])
    con.execute(
        "CREATE OR REPLACE TEMP TABLE events AS SELECT min(row_no) AS row_no, customer_id, ts, "
        "action, item_id, session_id, category, brand, price FROM staged WHERE reason IS NULL "
        "GROUP BY ALL"
    )
    report.rows_used = int(con.execute("SELECT count(*) FROM events").fetchone()[0])
    report.duplicates_dropped = valid - report.rows_used
    if report.duplicates_dropped:
        # Counted apart from the rejects, but listed in the same file so each can be found.
        con.execute(
            "UPDATE staged SET reason = 'duplicate of an earlier row in every column read "
            "(dropped)' WHERE reason IS NULL AND row_no NOT IN (SELECT row_no FROM events)"
        )
    rejects = _collect_rejects(con, src)
    _note_unclosed_quotes(rejects, report)
    hints = _hints(con, colmap, report)
    report.notes.extend(hints)
    failed = None if rejects_path is None else _failed_path(Path(rejects_path))
    if report.rows_used == 0:
        # A failed read leaves an earlier run's rejects file alone (it belongs to the files
        # beside it) and writes its own rows to `<name>.failed.csv`.
        quotes = [n for n in report.notes if "unclosed quote" in n] + hints
        if failed is not None and len(rejects):
            _write_atomic_csv(rejects, failed)
            quotes.append(f"every row with its reason written to {failed}")
        raise InputError(
            "zero usable rows: every row was rejected" + "".join(f"; {n}" for n in quotes),
            path=src.path,
            expected="rows with customer id, timestamp, action and item id",
            found=", ".join(f"{k}: {v}" for k, v in report.rows_rejected.items()),
        )
    if rejects_path is not None:
        # An earlier run's rejects under these names would describe other input.
        for stale in (Path(rejects_path), failed):
            if stale is not None and _earlier_rejects(stale, src.path):
                stale.unlink()
    if len(rejects) and rejects_path is not None:
        _write_atomic_csv(rejects, Path(rejects_path))
        report.rejects_path = str(rejects_path)
    elif len(rejects):
        report.notes.append(
            f"{len(rejects)} rejected or duplicate rows (pass rejects_path to keep them)"
        )
    if report.has_time:
        early = con.execute(
            f"SELECT count(*), min(ts) FROM events WHERE ts < {PLAUSIBLE_SINCE}"
        ).fetchone()
        if early[0]:
            report.notes.append(
                f"{early[0]:,} events dated before 1990 (earliest {early[1]:g} s after 1970): "
                "check the timestamp unit (--timestamp-unit)"
            )
    report.input_sorted = _is_sorted(con)
    if not report.input_sorted:
        report.notes.append("input was not in time order within customers; sorted")
    report.actions = dict(
        con.execute(
            "SELECT action, count(*) FROM events GROUP BY action ORDER BY count(*) DESC"
        ).fetchall()
    )
    # New action types, named from the used rows only (a repeated header line's
    # "behavior_type" is a rejected row, not an action type).
    known = set(CANONICAL_ACTIONS) | set(config.action_map.values())
    extra = [a for a in sorted(report.actions) if a not in known]
    if extra and not config.strict_actions:
        report.notes.append("kept as action types of their own: " + ", ".join(extra))
    con.execute("DROP TABLE IF EXISTS staged")
    report.seconds = time.perf_counter() - started
    return EventTable(
        con,
        report,
        has_session_ids="session_id" in colmap,
        has_time=report.has_time,
        rejects=rejects,
        source=src,
    )


def _reject_stray_early(con: duckdb.DuckDBPyConnection) -> None:
    """Rows dated before 1990 where most of the column is not: a unit slip in those rows
    (seconds in a millisecond column) that would put them at the wrong place in their
    journeys, so they are rejected with a reason. A column mostly before 1990 (relative
    times) is kept whole and gets a note instead."""
    early, dated = con.execute(
        f"SELECT count(*) FILTER (WHERE ts < {PLAUSIBLE_SINCE}), count(*) FROM staged "
        "WHERE reason IS NULL"
    ).fetchall()[0]
    if early and 2 * early < dated:
        con.execute(
            "UPDATE staged SET reason = 'timestamp before 1990 while the column is later "
            f"(another unit?)' WHERE reason IS NULL AND ts < {PLAUSIBLE_SINCE}"
        )


def _note_unclosed_quotes(rejects: pd.DataFrame, report: IngestReport) -> None:
    """An opening quote that never closes takes the following lines into one bad row."""
    swallowed = (rejects["reason"] == "malformed quoting") & rejects["raw"].astype(
        str
    ).str.contains("\n")
    for line, raw in rejects.loc[swallowed, ["line", "raw"]].head(5).itertuples(index=False):
        k = str(raw).rstrip("\r\n").count("\n")
        report.notes.append(
            f"line {line}: an unclosed quote ran over the next {k} line(s), which were "
            "rejected as part of that one row; fix the quote and read the file again"
        )


def _price_notes(con: duckdb.DuckDBPyConnection, style: str, report: IngestReport) -> None:
    """Say how prices that were not plain numbers were read, showing a grouped one
    ("1,299") first: that is where the column's convention decided the value."""
    n, example = con.execute(
        "SELECT count(*), arg_max([local_price, CAST(price AS VARCHAR)], "
        "regexp_matches(local_price, '[0-9][., ][0-9]{3}')) "
        "FROM staged WHERE reason IS NULL AND local_price IS NOT NULL"
    ).fetchone()
    if n:
        convention = "decimal comma" if style == "comma" else "decimal point"
        report.notes.append(
            f"{n:,} prices with a currency sign or separators were read with a {convention} "
            f"(the column's convention), e.g. '{example[0]}' -> {float(example[1]):g}"
        )
    if style == "mixed":
        report.notes.append(
            "the price column mixes decimal commas and points, so only plain numbers were "
            "read; the other prices are rejected rows"
        )


def _resolve_layout(src: RawSource, config: IngestConfig) -> tuple[Layout, bool]:
    if config.layout != "auto":
        if config.layout not in LAYOUTS:
            raise InputError(
                f"unknown layout '{config.layout}'",
                path=src.path,
                expected=", ".join(LAYOUTS),
                found=config.layout,
            )
        return LAYOUTS[config.layout], False
    if src.sequence_layout is not None:
        return src.sequence_layout, True
    if src.headerless_layout is not None:
        return src.headerless_layout, True
    found = detect_from_columns(src.columns)
    if found is not None:
        return found, True
    if config.column_map:
        return LAYOUTS["canonical"], False
    near = nearest_layout(src.columns)
    if near is not None:  # all but one signature column: name what is missing
        return near, True
    raise InputError(
        "unrecognised column layout",
        path=src.path,
        expected=(
            "one of the known layouts (" + ", ".join(LAYOUTS) + ") or --map "
            "customer_id=COL timestamp=COL action=COL item_id=COL"
        ),
        found=f"columns {src.columns}",
    )


def _resolve_columns(
    src: RawSource, layout: Layout, config: IngestConfig
) -> dict[str, str | tuple[str, ...]]:
    lower = {c.strip().lower(): c for c in src.columns}
    colmap: dict[str, str | tuple[str, ...]] = {}
    for canon, raw in {**layout.columns, **config.column_map}.items():
        if canon not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            raise InputError(
                f"--map names an unknown canonical column '{canon}'",
                path=src.path,
                expected=", ".join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS),
            )
        if canon in config.column_map and not str(raw).strip():
            if canon in REQUIRED_COLUMNS:
                raise InputError(
                    f"--map {canon}= (empty) would drop a required column",
                    path=src.path,
                    expected=f"--map {canon}=COLUMN",
                )
            continue  # `--map price=`: leave that optional column out
        names = (raw,) if isinstance(raw, str) else raw
        present = tuple(lower[n.strip().lower()] for n in names if n.strip().lower() in lower)
        if present:
            colmap[canon] = present[0] if len(present) == 1 else present
        elif canon in config.column_map:
            raise InputError(
                f"--map {canon}={raw}: no such column",
                path=src.path,
                column=str(raw),
                found=f"columns {src.columns}",
            )
    required = [c for c in REQUIRED_COLUMNS if not (c == "action" and layout.constant_action)]
    if layout.kind != "events":
        required = ["customer_id", "item_id"]
    missing = [c for c in required if c not in colmap]
    if missing:
        want = {c: layout.columns.get(c, c) for c in missing}
        raise InputError(
            f"missing required column(s) for layout '{layout.name}'",
            path=src.path,
            column=", ".join(str(v) for v in want.values()),
            expected=f"columns for {', '.join(missing)} (or --map {missing[0]}=COL)",
            found=f"columns {src.columns}",
        )
    return colmap


def _check_columns(src: RawSource, colmap: dict, report: IngestReport) -> None:
    """Refuse list / struct columns as ids, times or actions; note a repeated header name."""
    for canon in ("customer_id", "item_id", "timestamp", "action"):
        for col in _names(colmap.get(canon, ())):
            if col in src.nested:
                raise InputError(
                    f"column '{col}' ({canon}) holds {src.nested[col]} values, not single values",
                    path=src.path,
                    column=col,
                    expected=f"one {canon} per row (explode the list first, or --map another)",
                )
    used = [c for v in colmap.values() for c in _names(v)]
    repeated = [c for c in used if f"{c}_1" in src.columns]  # the reader's name for a repeat
    if repeated:
        report.notes.append(
            "the header repeats column(s) "
            + ", ".join(repr(c) for c in repeated)
            + ": the first of each is read (map another with --map)"
        )


def _names(mapped: str | tuple[str, ...]) -> tuple[str, ...]:
    """A column map value (one name, or names coalesced in order) as a tuple."""
    return (mapped,) if isinstance(mapped, str) else tuple(mapped)


def _col(colmap: dict[str, str | tuple[str, ...]], canon: str) -> str:
    """SQL expression for a canonical column as trimmed text, NULL when empty."""
    raw = colmap.get(canon)
    if raw is None:
        return "CAST(NULL AS VARCHAR)"
    parts = [f"NULLIF(trim(CAST({sql_ident(n)} AS VARCHAR)), '')" for n in _names(raw)]
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


def _id_expr(colmap: dict[str, str | tuple[str, ...]], canon: str) -> str:
    # Ids exported through float columns arrive as "266079.0"; they are the id 266079.
    return f"regexp_replace({_col(colmap, canon)}, '^(\\d+)\\.0+$', '\\1')"


def _timestamp_expression(
    con: duckdb.DuckDBPyConnection,
    src: RawSource,
    layout: Layout,
    colmap: dict,
    config: IngestConfig,
    report: IngestReport,
) -> str:
    raw = _col(colmap, "timestamp")
    if layout.kind != "events":
        report.timestamps = "none (order only: position in the file)"
        return f"TRY_CAST({raw} AS DOUBLE)"
    if config.timestamp_unit == "format" or (
        config.timestamp_unit not in _UNIT_DIVISORS and config.timestamp_unit not in ("auto", "iso")
    ):
        fmt = config.timestamp_unit
        if "%" not in fmt:  # not a unit and not a format: a typo, which would reject every row
            raise InputError(
                f"unknown --timestamp-unit {fmt!r}",
                path=src.path,
                expected="auto, s, ms, us, ns, iso, or a strptime format like '%d/%m/%Y %H:%M'",
            )
        try:  # a format DuckDB cannot use is the user's to fix, not a crash
            con.execute(f"SELECT try_strptime('2024-01-01', {sql_str(fmt)})").fetchone()
        except duckdb.Error as exc:
            raise InputError(
                f"--timestamp-unit {fmt!r} is not a usable strptime format: {exc}",
                path=src.path,
                expected="auto, s, ms, us, ns, iso, or a format like '%d/%m/%Y %H:%M'",
            ) from exc
        report.timestamps = f"strptime format {fmt!r} (given)"
        return f"epoch(try_strptime({raw}, {sql_str(fmt)}))"
    # "... UTC" / "... GMT" and an offset written after a space ("10:00:00 +02:00").
    zoned = f"regexp_replace({raw}, '\\s*(UTC|GMT)$', '+00:00')"
    zoned = f"regexp_replace({zoned}, '\\s+([+-][0-9]{{2}}:?[0-9]{{2}})$', '\\1')"
    iso = f"epoch(TRY_CAST({zoned} AS TIMESTAMPTZ))"
    sample = con.execute(
        f"SELECT {raw} AS v, TRY_CAST({raw} AS DOUBLE) AS num, {iso} IS NOT NULL AS iso_ok "
        f"FROM raw_src WHERE {raw} IS NOT NULL LIMIT 20000"
    ).df()
    finite = sample["num"].where(np.isfinite(sample["num"].astype("float64")))
    numeric_share = float(finite.notna().mean()) if len(sample) else 0.0
    iso_share = float((sample["iso_ok"] & finite.isna()).mean()) if len(sample) else 0.0
    unit = config.timestamp_unit if config.timestamp_unit != "auto" else layout.timestamp_unit
    if unit == "auto":
        if numeric_share < 0.5:
            unit = "iso"
        else:
            mag = float(finite.dropna().abs().median())
            unit = "ns" if mag >= 1e17 else "us" if mag >= 1e14 else "ms" if mag >= 1e11 else "s"
        how = "detected"
    else:
        how = "given" if config.timestamp_unit != "auto" else f"layout {layout.name}"
    div = _UNIT_DIVISORS.get(unit, 1.0)
    if unit == "iso":
        report.timestamps = f"ISO date-time strings ({how}); no zone = UTC"
        if numeric_share > 0:
            report.timestamps += f"; {numeric_share:.0%} numeric values read as Unix seconds"
        return f"coalesce({iso}, TRY_CAST({raw} AS DOUBLE))"
    report.timestamps = f"{_UNIT_NAMES[unit]} ({how})"
    if iso_share > 0:
        report.timestamps += f"; {iso_share:.0%} ISO strings in the sample also read"
    return f"coalesce(TRY_CAST({raw} AS DOUBLE) / {div}, {iso})"


def _action_expression(
    con: duckdb.DuckDBPyConnection,
    src: RawSource,
    layout: Layout,
    colmap: dict,
    config: IngestConfig,
    report: IngestReport,
) -> tuple[str, bool]:
    """SQL for the raw action value and whether it goes through the `action_map` table."""
    if layout.constant_action and "action" not in colmap:
        constant = config.action_map.get(layout.constant_action, layout.constant_action)
        report.action_translation = {"(every row)": constant}
        report.notes.append(
            f"order-only layout: every event is read as '{constant}' (one behaviour per row)"
        )
        return sql_str(constant), False
    raw = _col(colmap, "action")
    values = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT {raw} FROM raw_src WHERE {raw} IS NOT NULL"
        ).fetchall()
    ]
    if len(values) > 1000:
        raise InputError(
            f"the action column has {len(values)} distinct values; is it really the action?",
            path=src.path,
            column=str(colmap["action"]),
            expected="a handful of behaviour types",
            found=", ".join(map(str, values[:10])),
        )
    mapping = {v: translate_action(v, layout, config.action_map) for v in values}
    report.action_translation = dict(sorted(mapping.items()))
    seen = {str(v).strip().lower() for v in values}
    unused = [k for k in config.action_map if k.strip().lower() not in seen]
    if unused:
        report.notes.append(
            "--action names values that are not in the action column: "
            + ", ".join(repr(k) for k in unused)
            + "; its values are "
            + ", ".join(repr(str(v)) for v in sorted(values, key=str)[:20])
        )
    for target in sorted(set(config.action_map.values()) - set(CANONICAL_ACTIONS)):
        # A new action type is allowed (`repurchase`); a letter off a canonical name is a
        # typo (`add_crt`, `veiw`).
        near = [
            c
            for c in difflib.get_close_matches(target.lower(), CANONICAL_ACTIONS, 1, 0.7)
            if abs(len(c) - len(target)) <= 1
        ]
        if near:
            raise InputError(
                f"--action maps onto '{target}': did you mean '{near[0]}'?",
                path=src.path,
                expected=", ".join(CANONICAL_ACTIONS) + ", or a new action name",
            )
    known = set(CANONICAL_ACTIONS) | set(config.action_map.values())
    rows = [(k, v, v in known or not config.strict_actions) for k, v in mapping.items()]
    con.register("action_map_df", pd.DataFrame(rows, columns=["am_raw", "am_action", "am_ok"]))
    con.execute("CREATE OR REPLACE TEMP TABLE action_map AS SELECT * FROM action_map_df")
    return raw, True


# A price as shops write it: an optional currency sign or upper-case code, then a number whose
# thousands may be grouped by ",", "." or " " and whose decimals follow "," or ".".
_PRICE = (
    r"^(?:[A-Z]{3}|[$€£¥₹])?\s*(-?(?:[0-9]{1,3}(?:[., ][0-9]{3})+|[0-9]+)(?:[.,][0-9]+)?)\s*"
    r"(?:[A-Z]{3}|[$€£¥₹])?$"
)


def _price_core(raw: str) -> str:
    return f"regexp_extract(CAST({raw} AS VARCHAR), {sql_str(_PRICE)}, 1)"


def _price_style(con: duckdb.DuckDBPyConnection, raw: str) -> str:
    """The column's decimal separator, decided once for the whole column, not value by value.

    "plain" when every value is a plain number (one cheap scan, the common case); "comma"
    when decimals follow commas ("9,99", "1.234,5"), "dot" otherwise ("9.99", "1,299");
    "mixed" when both occur: then only plain numbers are read, since "1,299" could be either
    and guessing would invent prices.
    """
    plain = con.execute(
        f"SELECT NOT bool_or(strpos(v, ',') > 0 OR TRY_CAST(v AS DOUBLE) IS NULL) "
        f"FROM (SELECT {raw} AS v FROM raw_src) WHERE v IS NOT NULL"
    ).fetchone()[0]
    if plain is not False:  # plain numbers only (or no prices): nothing to decide
        return "plain"
    comma, dot = con.execute(
        "SELECT count(*) FILTER (WHERE regexp_matches(c, ',[0-9]{1,2}$') "
        "OR regexp_matches(c, '\\.[0-9]{3},')), "
        "count(*) FILTER (WHERE regexp_matches(c, '\\.[0-9]{1,2}$') "
        "OR regexp_matches(c, ',[0-9]{3}\\.')) "
        f"FROM (SELECT {_price_core(raw)} AS c FROM raw_src)"
    ).fetchone()
    return "mixed" if comma and dot else "comma" if comma else "dot"


def _price_expr(raw: str, style: str) -> str:
    """A price as a number: "$1,299", "9,99 EUR" and "1 234,50" read by the column's
    convention (`_price_style`); anything else only if it is a plain number. What is still
    not a number (or NaN / inf) makes the row a reject with its reason."""
    plain = f"TRY_CAST({raw} AS DOUBLE)"
    if style in ("plain", "mixed"):
        return plain
    core = f"replace({_price_core(raw)}, ' ', '')"  # '' when the value is not a price
    if style == "comma":
        local = f"replace(replace({core}, '.', ''), ',', '.')"
    else:
        local = f"replace({core}, ',', '')"
    return f"coalesce(TRY_CAST({local} AS DOUBLE), {plain})"


# Ids that an export wrote for a missing value: taken as ids, every such row would merge
# into one invented customer (or item).
_NULL_MARKERS = "('nan', 'null', 'none', 'na', 'n/a', '<na>', 'nil', 'undefined', '#n/a')"


def _stage(
    con: duckdb.DuckDBPyConnection,
    colmap: dict,
    ts_expr: str,
    action_expr: str,
    mapped: bool,
    check_future: bool,
    price_style: str = "plain",
) -> None:
    """Parse every row once and give each unusable row its reason."""
    now = time.time() + FUTURE_TOLERANCE_S if check_future else float("inf")
    action_join = f"LEFT JOIN action_map ON am_raw = {action_expr}" if mapped else ""
    action_val = "am_action" if mapped else action_expr
    action_ok = "coalesce(am_ok, false)" if mapped else "true"
    price_raw = _col(colmap, "price")
    # The raw spelling of prices that were not read as plain numbers (for the note).
    local_price = (
        "CAST(NULL AS VARCHAR)"
        if price_style in ("plain", "mixed")
        else "CASE WHEN price IS DISTINCT FROM TRY_CAST(raw_price AS DOUBLE) THEN raw_price END"
    )
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE staged AS
        SELECT row_no, cust AS customer_id, ts, act AS action, item AS item_id, session_id,
               category, brand, price,
               {local_price} AS local_price,
               CASE WHEN cust IS NULL THEN 'empty customer_id'
                    WHEN item IS NULL THEN 'empty item_id'
                    WHEN lower(cust) IN {_NULL_MARKERS} THEN 'customer_id is a null marker'
                    WHEN lower(item) IN {_NULL_MARKERS} THEN 'item_id is a null marker'
                    WHEN contains(cust, chr(0)) OR contains(item, chr(0))
                         THEN 'NUL byte in an id'
                    WHEN raw_ts IS NULL THEN 'empty timestamp'
                    WHEN ts IS NULL OR isnan(ts) OR isinf(ts) THEN 'unparseable timestamp'
                    WHEN ts > '{now!r}'::DOUBLE THEN 'timestamp in the future'
                    WHEN act IS NULL THEN 'empty action'
                    WHEN NOT act_ok THEN 'unknown action (strict mode)'
                    WHEN raw_price IS NOT NULL AND (price IS NULL OR isnan(price) OR isinf(price))
                         THEN 'unparseable price'
                    WHEN price < 0 THEN 'negative price'
               END AS reason
        FROM (
            SELECT r.row_no, {_id_expr(colmap, "customer_id")} AS cust,
                   {_id_expr(colmap, "item_id")} AS item,
                   {_col(colmap, "timestamp")} AS raw_ts, {ts_expr} AS ts,
                   {action_val} AS act, {action_ok} AS act_ok,
                   {_col(colmap, "session_id")} AS session_id,
                   {_col(colmap, "category")} AS category, {_col(colmap, "brand")} AS brand,
                   {price_raw} AS raw_price, {_price_expr(price_raw, price_style)} AS price
            FROM raw_src r {action_join}
        )
    """)


def _collect_rejects(con: duckdb.DuckDBPyConnection, src: RawSource) -> pd.DataFrame:
    cols = [c for c in src.columns if c != "row_no"]
    raw = " || ',' || ".join(f"coalesce(CAST(r.{sql_ident(c)} AS VARCHAR), '')" for c in cols)
    if src.format in ("sequence_lines", "sequence_pairs"):
        raw = "coalesce(r.customer_id, '') || ' ' || coalesce(r.item_id, '')"
    # The rejects file keeps the first million rejected rows; the report counts them all.
    found = con.execute(
        f"SELECT s.row_no AS line, s.reason, {raw} AS raw FROM staged s JOIN raw_src r "
        "ON r.row_no = s.row_no WHERE s.reason IS NOT NULL ORDER BY s.row_no LIMIT 1000000"
    ).df()
    found["line"] = src.line_of(found["line"].to_numpy())  # row number -> file line
    parts = [df for df in (src.parse_rejects, found) if len(df)]
    if not parts:
        return found
    out = pd.concat(parts, ignore_index=True)
    out["line"] = out["line"].astype("int64")
    exact = src.csv_lines is not None and src.csv_lines.exact
    if src.format == "csv" and exact and len(out) <= 100_000:
        # The line as the file holds it, unless the row ran over several lines (a quote).
        text = file_lines_text(src.path, out["line"].to_numpy(), max_chars=10_000)
        out["raw"] = [
            r if "\n" in str(r) else text.get(int(n), r)
            for n, r in zip(out["line"], out["raw"], strict=True)
        ]
    return out.sort_values("line", kind="stable").reset_index(drop=True)


def _is_sorted(con: duckdb.DuckDBPyConnection) -> bool:
    n = con.execute(
        "SELECT count(*) FROM (SELECT ts < lag(ts) OVER (PARTITION BY customer_id ORDER BY row_no)"
        " AS back FROM events) WHERE back"
    ).fetchone()[0]
    return int(n) == 0


def _hints(con: duckdb.DuckDBPyConnection, colmap: dict, report: IngestReport) -> list[str]:
    """The way out when a reason rejects many rows (a tenth or more): an unknown date
    format (with examples), or a file that is not UTF-8."""
    many = max(1, 0.1 * report.rows_read)
    hints = []
    bad = report.rows_rejected.get("unparseable timestamp", 0)
    if "timestamp" in colmap and bad >= many:
        examples = con.execute(
            f"SELECT DISTINCT {_col(colmap, 'timestamp')} FROM raw_src JOIN staged "
            "USING (row_no) WHERE reason = 'unparseable timestamp' LIMIT 3"
        ).fetchall()
        hints.append(
            f"{bad:,} timestamps not understood, e.g. "
            + ", ".join(repr(e[0]) for e in examples)
            + ": give their format with --timestamp-unit (a strptime pattern such as "
            "'%d/%m/%Y %H:%M', or s / ms / iso)"
        )
    if report.rows_rejected.get("invalid UTF-8 bytes", 0) >= many:
        hints.append(
            "many rows are not UTF-8 text: is the file Latin-1 or Windows-1252? Convert it "
            "with iconv -f WINDOWS-1252 -t UTF-8"
        )
    return hints


def _same_file(a: str | Path, b: str | Path) -> bool:
    """Both name one existing file (through links, `..` or another spelling)."""
    return Path(a).is_file() and Path(b).is_file() and Path(a).samefile(b)


def _earlier_rejects(path: Path, source: str) -> bool:
    """Whether `path` is a rejects file an earlier read wrote (never the input itself or
    any other file of the user's, which only look like one by name)."""
    if not path.is_file() or _same_file(path, source):
        return False
    with open(path, "rb") as fh:
        return fh.readline().rstrip(b"\r\n") == b"line,reason,raw"


def _failed_path(rejects_path: Path) -> Path:
    return rejects_path.with_name(rejects_path.stem + ".failed" + rejects_path.suffix)


def _write_atomic_csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)
