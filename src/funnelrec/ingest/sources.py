"""Open a raw file (CSV/TSV, gzip, Parquet, JSON Lines, sequence text) as a DuckDB relation.

Everything is read as text first: parsing and validation happen in SQL afterwards, so that a bad
value becomes a counted reject instead of an exception half-way through a 10-million-row file.
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from funnelrec.ingest.layouts import (
    Layout,
    detect_headerless,
    detect_sequence_text,
)
from funnelrec.schema import InputError

_SNIFF_BYTES = 64 * 1024
SEQ_POS = 100_000  # sequence lines: row_no = line * SEQ_POS + position of the item


@dataclass
class RawSource:
    """A registered relation `raw_src` with a `row_no` column and text columns."""

    path: str
    format: str  # csv | parquet | jsonl | dataframe | sequence_lines | sequence_pairs
    columns: list[str]
    header_lines: int  # lines before the first data row (for reporting file line numbers)
    parse_rejects: pd.DataFrame  # rows the reader itself could not parse (line, reason, raw)
    sequence_layout: Layout | None = None
    headerless_layout: Layout | None = None
    csv_lines: CsvLines | None = None
    notes: list[str] = field(default_factory=list)
    nested: dict[str, str] = field(default_factory=dict)  # list / struct columns: their type

    def line_of(self, row_no: np.ndarray) -> np.ndarray:
        """File line numbers of data rows (1-based `row_no`, as in `raw_src`); the row
        number itself for formats without lines (Parquet, a DataFrame)."""
        row_no = np.asarray(row_no, dtype=np.int64)
        if self.format == "sequence_lines":  # row_no = line * SEQ_POS + position in the line
            return row_no // SEQ_POS
        if self.format not in ("csv", "jsonl"):
            return row_no
        rows = self.csv_lines.row_lines() if self.csv_lines is not None else None
        return rows[row_no - 1] if rows is not None else row_no + self.header_lines


def _ends_quoted(line: bytes, quoted: bool) -> bool:
    """Whether a quoted field is still open after `line` (open at its start: `quoted`).

    As the reader does: a quote opens a field only at its start (line start or after a
    delimiter), so `27" monitor` is plain text; inside a field `""` is a quote.
    """
    if b'"' not in line:
        return quoted
    i, n = 0, len(line)
    while i < n:
        if line[i] == 34:  # a quote
            if quoted and i + 1 < n and line[i + 1] == 34:
                i += 2
                continue
            if quoted or i == 0 or line[i - 1] in b",;\t|":
                quoted = not quoted
        i += 1
    return quoted


class CsvLines:
    """Where a CSV's records start in the file, worked out on first use: only rejects
    need it, and a file whose every line is one record needs nothing but a line count."""

    def __init__(self, path: Path, header_lines: int, n_records: int) -> None:
        self.path, self.header_lines, self.n_records = path, header_lines, n_records

    @cached_property
    def n_lines(self) -> int:
        return _count_lines(self.path)

    @cached_property
    def records(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.n_lines == self.n_records:
            return None
        return _csv_records(self.path, self.n_records)

    @cached_property
    def exact(self) -> bool:
        """Whether data rows' file lines are known exactly (records found, or one per line);
        when not, a row's line is an estimate (its row number plus the header lines)."""
        return self.records is not None or self.n_lines == self.n_records

    def row_lines(self) -> np.ndarray | None:
        """File line of data row r at [r - 1]; None where it is r + header_lines."""
        if self.records is None:
            return None
        starts, blank = self.records
        return starts[np.flatnonzero(~blank)[self.header_lines :]]


def sql_str(value: str) -> str:
    """Quote a string literal for DuckDB."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + str(name).replace('"', '""') + '"'


def _is_gzip(path: Path) -> bool:
    """By the file's magic bytes, not its name (`.GZ`, or a gzip saved as `.csv`)."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _compression(path: Path) -> str:
    """read_csv's compression option, from the file's bytes (DuckDB goes by a lower-case
    `.gz`)."""
    return f"compression = '{'gzip' if _is_gzip(path) else 'none'}'"


def _opener(path: Path):
    return gzip.open if _is_gzip(path) else open


def _head_bytes(path: Path) -> bytes:
    opener = _opener(path)
    try:
        with opener(path, "rb") as fh:
            return fh.read(_SNIFF_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read file: {exc}", path=str(path)) from exc


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "text"


def open_source(
    con: duckdb.DuckDBPyConnection,
    source: str | Path | pd.DataFrame,
    delimiter: str | None = None,
    has_header: bool | None = None,
    sequences: bool | Layout = True,
    wanted: tuple[str, ...] = (),
    named: Layout | None = None,
) -> RawSource:
    """Register `source` as view `raw_src` (all text + `row_no`) and describe it.

    `sequences=False` never reads a file as order-only sequence text (the user named an
    event layout or mapped columns); a sequence Layout reads it as that layout. `wanted`:
    column names the user mapped; in JSON, a dotted one (`user.id`) reads a nested field.
    `named`: the event layout the user named (its header-less column names may apply).
    """
    if isinstance(source, pd.DataFrame):
        return _open_dataframe(con, source)
    path = Path(source)
    if not path.exists():
        raise InputError("file not found", path=str(path))
    if path.is_dir():
        raise InputError("expected a file, found a directory", path=str(path))
    if path.stat().st_size == 0:
        raise InputError(
            "file is empty (0 bytes)", path=str(path), expected="a header and event rows"
        )
    fmt = _format_of(path)
    if fmt == "parquet":
        return _open_parquet(con, path)
    head = _head_bytes(path)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(
            "file is UTF-16 text (an Excel 'Unicode text' export?)",
            path=str(path),
            expected="UTF-8: save it again as 'CSV UTF-8', or iconv -f UTF-16 -t UTF-8",
        )
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n"):
        raise InputError(
            "file is empty (only blank lines or a byte-order mark)",
            path=str(path),
            expected="a header and event rows",
        )
    # A stray NUL in a text file is one bad row (rejected with its line); many are binary.
    if head.count(b"\x00") > max(2, len(head) // 1000):
        raise InputError(
            "file looks binary (contains NUL bytes), not a text table",
            path=str(path),
            expected="CSV, CSV.gz, Parquet or JSON Lines",
            found=repr(head[:40]),
        )
    if fmt == "jsonl":
        body = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        # One JSON array, unless its first line is a whole JSON value (JSON Lines whose
        # first line happens to be an array: a reject of its own there).
        array = body.startswith(b"[") and not is_json(body.split(b"\n", 1)[0])
        return _open_jsonl(con, path, array, wanted)
    text = head.decode("utf-8", errors="replace")
    lines = text.splitlines()[:50]
    if len(head) == _SNIFF_BYTES and lines:
        lines = lines[:-1]  # the last line may be cut
    seq = detect_sequence_text(lines) if delimiter is None and sequences else None
    if isinstance(sequences, Layout):  # named by the user: no guessing
        seq = sequences
    if seq is not None:
        return _open_sequence_text(con, path, seq)
    return _open_csv(con, path, lines, delimiter, has_header, named)


def _open_dataframe(con: duckdb.DuckDBPyConnection, df: pd.DataFrame) -> RawSource:
    if len(df.columns) == 0:
        raise InputError("the DataFrame has no columns", path="<DataFrame>")
    frame = pd.DataFrame({str(c): df[c].astype("string") for c in df.columns})
    con.register("raw_df", frame)
    cols = list(frame.columns)
    select = ", ".join(sql_ident(c) for c in cols)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW raw_src AS "
        f"SELECT row_number() OVER () AS row_no, {select} FROM raw_df"
    )
    return RawSource("<DataFrame>", "dataframe", cols, 0, _empty_rejects())


def _open_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> RawSource:
    try:
        described = con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({sql_str(str(path))})"
        ).fetchall()
    except duckdb.Error as exc:
        raise InputError(f"cannot read Parquet: {_first_line(exc)}", path=str(path)) from exc
    cols = [r[0] for r in described]
    nested = {
        r[0]: str(r[1])
        for r in described
        if str(r[1]).endswith("]") or str(r[1]).startswith(("STRUCT", "MAP", "UNION"))
    }
    select = ", ".join(f"CAST({sql_ident(c)} AS VARCHAR) AS {sql_ident(c)}" for c in cols)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW raw_src AS SELECT file_row_number + 1 AS row_no, {select} "
        f"FROM read_parquet({sql_str(str(path))}, file_row_number = true)"
    )
    return RawSource(str(path), "parquet", cols, 0, _empty_rejects(), nested=nested)


def _open_jsonl(
    con: duckdb.DuckDBPyConnection, path: Path, array: bool = False, wanted: tuple[str, ...] = ()
) -> RawSource:
    """JSON Lines, or one JSON array of objects (`array`: then a row's "line" is the
    object's position in the array)."""
    lines_rel = (
        f"SELECT row_number() OVER () AS row_no, line FROM read_csv({sql_str(str(path))}, "
        "columns = {'line': 'VARCHAR'}, delim = '\x01', header = false, quote = '', "
        "escape = '', auto_detect = false, store_rejects = true, "
        "rejects_table = 'jrej_errors', rejects_scan = 'jrej_scans', max_line_size = 4000000"
        f", {_compression(path)})"
    )
    if array:
        try:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE raw_lines AS SELECT row_number() OVER () AS "
                f"row_no, CAST(json AS VARCHAR) AS line FROM read_json({sql_str(str(path))}, "
                "format = 'array', records = 'false', columns = {'json': 'JSON'}"
                f", {_compression(path)})"
            )
        except duckdb.Error as exc:  # one bad element spoils the whole array
            raise InputError(
                f"cannot read the JSON array: {_first_line(exc)}",
                path=str(path),
                expected="one valid JSON array of objects, or JSON Lines (one object per line)",
            ) from exc
    try:
        if not array:
            con.execute(f"CREATE OR REPLACE TEMP TABLE raw_lines AS {lines_rel}")
    except duckdb.Error as exc:
        raise InputError(f"cannot read JSON Lines: {_first_line(exc)}", path=str(path)) from exc
    keys = con.execute(
        "SELECT DISTINCT unnest(json_keys(j)) FROM (SELECT CASE WHEN json_valid(line) AND "
        "json_type(CASE WHEN json_valid(line) THEN line END) = 'OBJECT' THEN line END AS j "
        "FROM raw_lines WHERE trim(line) <> '' LIMIT 20000) WHERE j IS NOT NULL"
    ).fetchall()
    cols = sorted(k[0] for k in keys)
    if not cols:
        raise InputError(
            "no JSON objects found", path=str(path), expected="one JSON object per line"
        )
    # Nested fields the user mapped by a dotted path (`--map customer_id=user.id`).
    cols += [c for c in wanted if "." in c and c not in cols and c.split(".")[0] in cols]
    reader_bad = _empty_rejects()
    if not array:
        reader_bad = _dedupe_errors(con, "jrej_errors")
        reader_bad["data_row"] = reader_bad["line"]  # one record per line, blanks included
        reader_bad = _reader_rejects(con, reader_bad, "raw_lines")
    # Guard every JSON function with CASE: DuckDB may evaluate projections on rows a WHERE
    # clause would have removed, and a malformed line must become a reject, not an exception.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE raw_lines AS SELECT row_no, line, "
        "CASE WHEN json_valid(line) THEN json_type(line) = 'OBJECT' ELSE false END AS is_obj, "
        "json_valid(line) AS is_json FROM raw_lines WHERE trim(line) <> ''"
    )
    select = ", ".join(
        f"CASE WHEN is_obj THEN CAST(json_extract_string(line, "
        f"{sql_str(_json_path(c, wanted))}) AS VARCHAR) END AS {sql_ident(c)}"
        for c in cols
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE raw_src AS SELECT row_no, {select} FROM raw_lines "
        "WHERE is_obj"
    )
    bad = con.execute(
        "SELECT row_no AS line, CASE WHEN is_json THEN 'not a JSON object' "
        "ELSE 'malformed JSON line' END AS reason, line AS raw FROM raw_lines WHERE NOT is_obj"
    ).df()
    bad = pd.concat([b for b in (reader_bad, bad) if len(b)] or [bad], ignore_index=True)
    return RawSource(str(path), "jsonl", cols, 0, bad)


def is_json(text: str | bytes) -> bool:
    """Whether the text is one complete JSON value."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _json_path(col: str, wanted: tuple[str, ...]) -> str:
    """JSON path of a column: a top-level key, or a dotted path the user mapped."""
    if "." in col and col in wanted:
        return "$." + ".".join(_json_key(part) for part in col.split("."))
    return "$." + _json_key(col)


def _json_key(key: str) -> str:
    return '"' + key.replace('"', '\\"') + '"'


def _open_sequence_text(con: duckdb.DuckDBPyConnection, path: Path, layout: Layout) -> RawSource:
    src = (
        f"read_csv({sql_str(str(path))}, columns = {{'line': 'VARCHAR'}}, delim = '\x01', "
        f"header = false, quote = '', escape = '', auto_detect = false, {_compression(path)})"
    )
    if layout.kind == "sequence_lines":
        # Position within the line is the order; the line number keeps lines of the same user
        # (if a user appears twice) in file order.
        con.execute(
            "CREATE OR REPLACE TEMP VIEW raw_src AS "
            f"SELECT line_no * {SEQ_POS} + pos AS row_no, toks[1] AS customer_id, "
            f"item AS item_id, CAST(line_no * {SEQ_POS} + pos AS VARCHAR) AS timestamp FROM ("
            "  SELECT line_no, toks, unnest(toks[2:]) AS item, generate_subscripts(toks[2:], 1)"
            "  AS pos FROM (SELECT line_no,"
            "  string_split(regexp_replace(trim(line), '\\s+', ' ', 'g'), ' ') AS toks FROM"
            f"  (SELECT row_number() OVER () AS line_no, line FROM {src})"
            "  WHERE trim(line) <> ''))"  # numbered before blank lines go: file line numbers
        )
    else:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW raw_src AS SELECT row_no, toks[1] AS customer_id, "
            "toks[2] AS item_id, CAST(row_no AS VARCHAR) AS timestamp FROM ("
            "SELECT row_no, string_split(regexp_replace(trim(line), '\\s+', ' ', 'g'), ' ') AS "
            f"toks FROM (SELECT row_number() OVER () AS row_no, line FROM {src}) "
            "WHERE trim(line) <> '')"
        )
    cols = ["customer_id", "item_id", "timestamp"]
    return RawSource(str(path), layout.kind, cols, 0, _empty_rejects(), sequence_layout=layout)


def _open_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    lines: list[str],
    delimiter: str | None,
    has_header: bool | None,
    named: Layout | None = None,
) -> RawSource:
    # DuckDB's parser gives up on a file that mixes CRLF and LF line endings (a tool
    # rewrote some lines): an error, or no rows at all after a skipped preamble. Both
    # endings are valid: read a copy with LF endings, which has the same lines, so every
    # reject keeps its line number.
    try:
        src = _read_csv(con, path, lines, delimiter, has_header, named=named)
        empty = not con.execute("SELECT count(*) FROM raw_tbl").fetchone()[0]
        if not (empty and not len(src.parse_rejects) and b"\r" in _head_bytes(path)):
            return src
    except InputError as exc:
        if "invalid state" not in str(exc):
            raise
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "lf.csv"
        _copy_with_lf(path, copy)
        return _read_csv(con, path, lines, delimiter, has_header, copy, named)


def _copy_with_lf(path: Path, copy: Path) -> None:
    with _opener(path)(path, "rb") as src, open(copy, "wb") as dst:
        carry = b""
        while chunk := src.read(1 << 24):
            chunk = carry + chunk
            carry = b"\r" if chunk.endswith(b"\r") else b""
            dst.write(chunk[: len(chunk) - len(carry)].replace(b"\r\n", b"\n"))
        dst.write(carry)


def _read_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    lines: list[str],
    delimiter: str | None,
    has_header: bool | None,
    source: Path | None = None,
    named: Layout | None = None,
) -> RawSource:
    """Read `path` (or `source`, a copy of it with the same lines) into `raw_tbl`."""
    source = source or path
    # An explicit quote character: without it one badly quoted row can make the sniffer turn
    # quoting off, and then every correctly quoted row splits into too many fields.
    # No comment character: the sniffer may otherwise pick '#' and silently drop rows
    # and cut values ("#42" as a customer id, "i3 # promo" as an item).
    opts = [
        "all_varchar = true",
        "store_rejects = true",
        "rejects_table = 'rej_errors'",
        "rejects_scan = 'rej_scans'",
        "max_line_size = 4000000",
        "quote = '\"'",
        "comment = ''",
    ]
    opts.append(_compression(source))  # whatever the file is called
    given = delimiter
    skip, skip_text, sep = _preamble(lines, delimiter, has_header)
    delimiter = delimiter or sep
    notes = []
    if skip:
        opts.append(f"skip = {skip}")
        shown = "; ".join(repr(ln[:60]) for ln in lines[:skip] if ln.strip())
        notes.append(f"skipped {skip} line(s) before the header: {shown}")
        lines = lines[skip:]
    headerless = None
    if has_header is None or (has_header is False and named is not None):
        found = detect_headerless(lines[:20], delimiter, named)
        if found is not None:
            headerless, delimiter = found
            has_header = False
    if delimiter is not None:
        opts.append(f"delim = {sql_str(delimiter)}")
    if has_header is not None:
        opts.append(f"header = {str(has_header).lower()}")
    if headerless is not None:
        names = ", ".join(sql_str(n) for n in headerless.headerless_names or ())
        opts.append(f"names = [{names}]")
    reader = f"read_csv({sql_str(str(source))}, {', '.join(opts)})"
    try:
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
    except duckdb.Error as exc:
        # The sniffer gives up on some files (a giant line, say). Read the header ourselves
        # and let the reader reject the bad rows one by one instead of refusing the file.
        reader, cols = _reader_without_sniffing(source, lines, delimiter, opts, exc, path)
    header = lines[0] if lines else ""
    others = [d for d in ",;\t|" if d != given and d in header]
    if given is not None and len(cols) == 1 and others:
        raise InputError(
            f"--delimiter {given!r} does not split the header, which holds {others[0]!r}",
            path=str(path),
            expected=f"--delimiter {others[0]!r}, or no --delimiter to detect it",
            found=header[:200],
        )
    if (
        len(cols) == 1
        and delimiter is None
        and headerless is None
        and any(d in header for d in ",;\t|")
    ):
        # One column although the header has delimiters: the sniffer was thrown by a bad row.
        reader, cols = _reader_without_sniffing(source, lines, delimiter, opts, None, path)
    select = ", ".join(sql_ident(c) for c in cols)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE raw_tbl AS "
            f"SELECT row_number() OVER () AS row_no, {select} FROM {reader}"
        )
    except duckdb.Error as exc:
        raise InputError(f"cannot read CSV: {_first_line(exc)}", path=str(path)) from exc
    con.execute("CREATE OR REPLACE TEMP VIEW raw_src AS SELECT * FROM raw_tbl")
    # Non-blank lines before the first data row (blank ones are records of their own below).
    header_lines = skip_text + (0 if has_header is False or _looks_headerless(cols) else 1)
    bad = _dedupe_errors(con, "rej_errors")
    n_rows = con.execute("SELECT count(*) FROM raw_tbl").fetchall()[0][0]
    lines = CsvLines(path, header_lines, header_lines + n_rows + len(bad))
    if len(bad) and lines.records is not None:
        # The reader's numbers count blank lines but not a quoted field's line breaks.
        starts, blank = lines.records
        rank = np.cumsum(~blank) - header_lines  # data-row index of each record
        at = bad["line"].to_numpy(dtype=np.int64) - 1
        bad["data_row"], bad["line"] = rank[at], starts[at]
    else:
        bad["data_row"] = bad["line"] - header_lines
    bad = _reader_rejects(con, bad, "raw_tbl")
    return RawSource(
        str(path),
        "csv",
        cols,
        header_lines,
        bad,
        headerless_layout=headerless,
        csv_lines=lines,
        notes=notes,
    )


def _preamble(
    lines: list[str], delimiter: str | None, has_header: bool | None = None
) -> tuple[int, int, str | None]:
    """Lines to skip before the header: (all of them, the non-blank ones, the delimiter an
    Excel `sep=X` line names).

    Exports often start with a title, a date or `# comments`. A preamble line holds no
    delimiter, or starts with '#' and has fewer fields than the line after it; blank lines
    between such lines and the header are skipped with them (at most 20 lines). A file
    read without a header (`has_header=False`) has no preamble but `sep=`.
    """
    n, text_lines, sep = 0, 0, None
    first = lines[0].lstrip("\ufeff").rstrip("\r\n") if lines else ""
    if len(first) == 5 and first.startswith("sep="):
        n, text_lines, sep = 1, 1, first[4]
    if has_header is False:
        return n, text_lines, sep
    delims = [delimiter or sep] if (delimiter or sep) else list(",;\t|")

    def fields(line: str) -> int:
        return 1 + max(line.count(d) for d in delims)

    rest = [ln.lstrip("\ufeff").strip() for ln in lines[n:]]
    pending = 0  # blank lines seen since the last preamble line
    for i, text in enumerate(rest[:20]):
        if not text:
            pending += 1
            continue
        after = next((t for t in rest[i + 1 :] if t), "")
        if fields(text) == 1 or (text.startswith("#") and after and fields(text) < fields(after)):
            if not any(fields(t) > 1 for t in rest[i + 1 :]):
                break  # nothing delimited follows: not a preamble, a one-column file
            n, text_lines, pending = n + pending + 1, text_lines + 1, 0
            continue
        if text_lines:
            n += pending  # blank lines between the preamble and the header
        break
    return n, text_lines, sep


def _count_lines(path: Path) -> int:
    n_lines, last = 0, b"\n"
    with _opener(path)(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            n_lines += chunk.count(b"\n")
            last = chunk[-1:]
    return n_lines + (last != b"\n")


def _csv_records(path: Path, n_records: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(first file line, is blank) of each record as DuckDB's CSV reader numbers them
    (asked only when the line count says that some record is not one line).

    Why: rejects must name the file line a person finds in an editor; blank lines (skipped)
    and quoted fields that hold line breaks make that differ from the row number. If the
    records found here disagree with the reader's count, row numbers stay.
    """
    starts, blank, quoted = [], [], False
    with _opener(path)(path, "rb") as fh:
        for i, line in enumerate(fh, 1):
            if not quoted:
                starts.append(i)
                blank.append(line.strip(b"\r\n") == b"")
            quoted = _ends_quoted(line, quoted)
    is_blank = np.asarray(blank, dtype=bool)
    if int((~is_blank).sum()) != n_records:
        return None
    return np.asarray(starts, dtype=np.int64), is_blank


def file_lines_text(
    path: str | Path, wanted: np.ndarray, max_chars: int = 10_000
) -> dict[int, str]:
    """The text of the given 1-based file lines (read in blocks, stops after the last
    wanted); a longer line is cut to `max_chars` and says how long it was.

    Why: a reject should show the line as the file holds it (its delimiter, its quoting,
    its undecodable bytes as \\x escapes), not the fields joined back together.
    """
    want = np.unique(np.asarray(wanted, dtype=np.int64))
    out: dict[int, str] = {}

    def keep(n: int, raw: bytes) -> None:
        text = raw.rstrip(b"\r").decode("utf-8", errors="backslashreplace")
        if len(text) > max_chars:
            text = f"{text[:max_chars]}... ({len(text):,} characters)"
        out[n] = text

    first, buf = 1, b""  # file line number of buf's first line
    with _opener(Path(path))(Path(path), "rb") as fh:
        while len(want) and first <= want[-1]:
            chunk = fh.read(1 << 24)
            if not chunk:
                if buf and first in want:
                    keep(first, buf)
                break
            buf += chunk
            ends = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10)
            if not len(ends):
                continue
            starts = np.concatenate([[0], ends[:-1] + 1])
            here = want[(want >= first) & (want < first + len(ends))]
            for n in here.tolist():
                i = n - first
                keep(n, buf[starts[i] : ends[i]])
            first += len(ends)
            buf = buf[ends[-1] + 1 :]
    return out


def _reader_without_sniffing(
    source: Path,
    lines: list[str],
    delimiter: str | None,
    opts: list[str],
    exc: Exception | None,
    path: Path,
) -> tuple[str, list[str]]:
    """A reader of `source` with the header's names and no sniffing; `path` for messages."""
    header = lines[0] if lines else ""
    delim = delimiter or max(",;\t|", key=header.count)
    names = [h.strip().strip('"') for h in header.split(delim)]
    if len(names) < 2 or any(not n for n in names):
        why = _first_line(exc) if exc else "no delimiter found in the header"
        raise InputError(
            f"cannot parse as CSV: {why}",
            path=str(path),
            expected="a delimited text file with a header row",
            found=header[:200],
        ) from exc
    columns = "{" + ", ".join(f"{sql_str(n)}: 'VARCHAR'" for n in names) + "}"
    keep = [o for o in opts if not o.startswith(("delim", "header", "all_varchar"))]
    keep += [
        f"delim = {sql_str(delim)}",
        "header = true",
        "auto_detect = false",
        f"columns = {columns}",
    ]
    return f"read_csv({sql_str(str(source))}, {', '.join(keep)})", names


def _looks_headerless(cols: list[str]) -> bool:
    return all(c.startswith("column") and c[6:].isdigit() for c in cols)


def _dedupe_errors(con: duckdb.DuckDBPyConnection, errors: str) -> pd.DataFrame:
    """Rows DuckDB's reader skipped (its line number, reason, raw), one per row.

    The reader reports a row once per problem (a row with three extra fields: three
    times); it is one rejected row.
    """
    bad = con.execute(
        "SELECT line, lower(error_type) || ': ' || error_message AS reason, csv_line AS raw "
        f"FROM {errors} ORDER BY line"
    ).df()
    bad = bad.drop_duplicates("line", keep="first").reset_index(drop=True)
    # The reader's text of a row can start with the blank lines it skipped before it.
    bad["raw"] = bad["raw"].map(lambda r: r.lstrip("\r\n") if isinstance(r, str) else r)
    return bad


def _reader_rejects(con: duckdb.DuckDBPyConnection, bad: pd.DataFrame, table: str) -> pd.DataFrame:
    """The reader's rejects (line, reason, raw), with `table`'s row numbers realigned to the
    file's data rows; `bad["data_row"]` is each reject's own data-row index."""
    if len(bad):
        _realign_row_numbers(con, bad["data_row"].to_numpy(), table=table)
    bad = bad.drop(columns="data_row")
    bad["reason"] = bad["reason"].map(_reader_reason)
    return bad


def _realign_row_numbers(con: duckdb.DuckDBPyConnection, skipped_rows, table: str) -> None:
    """Turn `row_no` into the data-row index the file had, counting rows the reader skipped."""
    skipped = np.unique(np.asarray(skipped_rows, dtype=np.int64))  # data-row indices
    # Row r among kept rows sits at data index d = r + #(skipped indices < d); solve by
    # shifting r by the number of skipped indices k with skipped[k] - k <= r.
    adjusted = skipped - np.arange(len(skipped))
    con.register("skip_adj", pd.DataFrame({"adj": adjusted}))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT r.* REPLACE (r.row_no + "
        f"(SELECT count(*) FROM skip_adj WHERE adj <= r.row_no) AS row_no) FROM {table} r"
    )


def _reader_reason(text: str) -> str:
    low = text.lower()
    if "unicode" in low:
        return "invalid UTF-8 bytes"
    if "too many columns" in low:
        return "too many fields"
    if "missing columns" in low:
        return "too few fields"
    if "line size" in low or "maximum line size" in low:
        return "line too long"
    if "unquoted" in low or "quote" in low:
        return "malformed quoting"
    return text.split(":")[0]


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _empty_rejects() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line": pd.Series([], dtype="int64"),
            "reason": pd.Series([], dtype="string"),
            "raw": pd.Series([], dtype="string"),
        }
    )


def read_text_head(path: str | Path, n: int = 5) -> list[str]:
    """First `n` lines of a (possibly gzipped) text file, for messages."""
    head = _head_bytes(Path(path))
    return io.StringIO(head.decode("utf-8", errors="replace")).read().splitlines()[:n]
