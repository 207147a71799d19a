"""Malformed inputs to ingestion: every bad file gets a clear InputError, every bad row a count.

Two rules are checked throughout:

* a whole-file problem raises `InputError` whose message says what is wrong (and where);
* a row-level problem never makes a row disappear silently:
  rows_read == rows_used + sum(rows_rejected) + duplicates_dropped,
  and the rejects file names each rejected row's 1-based file line and reason (the line
  an editor shows: blank lines and quoted line breaks before it included).
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from funnelrec.cli import app
from funnelrec.config import IngestConfig
from funnelrec.ingest import IngestReport, read_events
from funnelrec.schema import InputError
from funnelrec.sequences import Sequences, load_sequences

HEADER = "customer_id,timestamp,action,item_id\n"
T0 = 1704067200  # 2024-01-01T00:00:00Z

runner = CliRunner()


# ----------------------------------------------------------------------------- helpers


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def _accounted(report: IngestReport) -> None:
    """Nothing disappears without a count."""
    assert report.rows_read == (
        report.rows_used + sum(report.rows_rejected.values()) + report.duplicates_dropped
    ), report


def _rejects(path: Path | str) -> list[tuple[int, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [(int(row["line"]), row["reason"]) for row in csv.DictReader(fh)]


def _ts_by_item(seqs: Sequences) -> dict[str, float]:
    items = [str(seqs.vocab.item_ids[i]) for i in seqs.items]
    return dict(zip(items, seqs.timestamps.tolist(), strict=True))


def _rows(n: int, customer: str = "1", start: int = T0) -> str:
    return "".join(f"{customer},{start + 60 * i},view,{100 + i}\n" for i in range(n))


# ----------------------------------------------------------------------------- whole-file errors


def test_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(InputError, match="file not found") as info:
        read_events(missing)
    assert info.value.path == str(missing)
    assert str(missing) in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    folder = tmp_path / "events.csv"
    folder.mkdir()
    with pytest.raises(InputError, match="expected a file, found a directory"):
        read_events(folder)


def test_empty_file_zero_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path, "empty.csv", b"")
    with pytest.raises(InputError, match=r"file is empty \(0 bytes\)") as info:
        read_events(path)
    assert info.value.expected == "a header and event rows"


def test_header_only_has_no_data_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, "header.csv", HEADER)
    with pytest.raises(InputError, match="no data rows") as info:
        read_events(path)
    # The message shows what was found, so the user sees the header was read correctly.
    assert "customer_id" in str(info.value) and "item_id" in str(info.value)


def test_binary_garbage_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", bytes(range(256)) * 64)
    with pytest.raises(InputError, match="looks binary") as info:
        read_events(path)
    assert info.value.expected is not None and "CSV" in info.value.expected


def test_corrupt_parquet_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.parquet", b"PAR1 this is not really parquet")
    with pytest.raises(InputError, match="cannot read Parquet"):
        read_events(path)


def test_missing_required_column_with_explicit_layout(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", f"customer_id,timestamp,item_id\n1,{T0},10\n")
    with pytest.raises(InputError, match="missing required column") as info:
        read_events(path, IngestConfig(layout="canonical"))
    err = info.value
    assert err.column == "action"
    assert "column 'action'" in str(err)
    assert "--map action=COL" in str(err)
    # Lists the columns it did find.
    assert "['customer_id', 'timestamp', 'item_id']" in str(err)


def test_missing_required_column_is_named_under_auto_detection(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", f"customer_id,timestamp,item_id\n1,{T0},10\n")
    with pytest.raises(InputError) as info:
        read_events(path)
    assert "['customer_id', 'timestamp', 'item_id']" in str(info.value)
    assert "action" in (info.value.column or "")


def test_unknown_layout_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", HEADER + _rows(2))
    with pytest.raises(InputError, match="unknown layout 'amazon'") as info:
        read_events(path, IngestConfig(layout="amazon"))
    assert "canonical" in (info.value.expected or "")
    assert "rees46" in (info.value.expected or "")


def test_column_map_to_nonexistent_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", HEADER + _rows(2))
    with pytest.raises(InputError, match="--map customer_id=visitor: no such column") as info:
        read_events(path, IngestConfig(column_map={"customer_id": "visitor"}))
    assert info.value.column == "visitor"
    assert "columns ['customer_id', 'timestamp', 'action', 'item_id']" in str(info.value)


def test_zero_usable_rows(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", HEADER + "1,not-a-time,view,10\n,1704067200,view,11\n")
    with pytest.raises(InputError, match="zero usable rows") as info:
        read_events(path)
    # The message says why every row went.
    assert "unparseable timestamp: 1" in str(info.value)
    assert "empty customer_id: 1" in str(info.value)


# ----------------------------------------------------------------------------- delimiters


def test_semicolon_delimiter_is_sniffed(tmp_path: Path) -> None:
    text = "customer_id;timestamp;action;item_id\n1;2024-01-01 00:00:00;view;10\n"
    text += "2;2024-01-01 00:00:01;purchase;11\n"
    report = read_events(_write(tmp_path, "events.csv", text)).report
    assert report.layout == "canonical"
    assert report.rows_used == 2 and report.rows_rejected == {}
    _accounted(report)


def test_wrong_explicit_delimiter_gives_clear_error(tmp_path: Path) -> None:
    text = f"customer_id;timestamp;action;item_id\n1;{T0};view;10\n"
    path = _write(tmp_path, "events.csv", text)
    with pytest.raises(InputError, match="--delimiter ',' does not split the header") as info:
        read_events(path, IngestConfig(delimiter=","))
    assert "--delimiter ';'" in (info.value.expected or "")


def test_a_file_of_only_a_byte_order_mark_is_empty(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file is empty"):
        read_events(_write(tmp_path, "events.csv", b"\xef\xbb\xbf\n\n"))


# ----------------------------------------------------------------------------- timestamps


def test_mixed_iso_and_unix_seconds_parse_to_exact_epochs(tmp_path: Path) -> None:
    text = HEADER + (
        "1,2024-01-01T00:00:00Z,view,10\n"
        "1,1704067260,add_cart,11\n"  # 00:01 as Unix seconds
        "1,2024-01-01 00:02:00 UTC,view,12\n"  # ' UTC' suffix
        "1,2024-01-01 00:03:00 GMT,view,13\n"  # ' GMT' suffix
        "1,2024-01-01T02:04:00+02:00,view,14\n"  # 00:04 UTC with an offset
        "1,2024-01-01 00:05:00,purchase,15\n"  # no zone = UTC
    )
    seqs, report, _ = load_sequences(_write(tmp_path, "events.csv", text))
    assert report.rows_rejected == {}
    assert report.rows_used == 6
    _accounted(report)
    assert _ts_by_item(seqs) == {str(10 + k): float(T0 + 60 * k) for k in range(6)}


def test_iso_offsets_give_exact_epochs(tmp_path: Path) -> None:
    text = HEADER + (
        "1,2024-01-01T00:00:00.500+02:00,view,10\n"
        "1,2024-01-01T00:00:00+0200,view,11\n"
        "1,2024-01-01 00:00:00+05:30,view,12\n"
        "1,2024-01-01T00:00:00-05:00,view,13\n"
        "1,2024-01-01,view,14\n"
    )
    seqs, report, _ = load_sequences(_write(tmp_path, "events.csv", text))
    assert report.rows_rejected == {}
    _accounted(report)
    assert "ISO" in report.timestamps
    assert _ts_by_item(seqs) == {
        "10": T0 - 7200 + 0.5,
        "11": float(T0 - 7200),
        "12": float(T0 - 19800),
        "13": float(T0 + 18000),
        "14": float(T0),
    }
    # Times are sorted after conversion to UTC, not as the strings read.
    assert [str(seqs.vocab.item_ids[i]) for i in seqs.items] == ["12", "11", "10", "14", "13"]


def test_millisecond_timestamps_are_detected(tmp_path: Path) -> None:
    text = HEADER + f"1,{T0}000,view,10\n1,{T0 + 60}500,purchase,11\n"
    seqs, report, _ = load_sequences(_write(tmp_path, "events.csv", text))
    assert "milliseconds" in report.timestamps
    assert seqs.timestamps.tolist() == [float(T0), T0 + 60.5]
    _accounted(report)


def test_unparseable_timestamps_counted_with_file_lines(tmp_path: Path) -> None:
    text = HEADER + (
        f"1,{T0},view,10\n"  # line 2
        "1,yesterday,view,11\n"  # line 3
        f"2,{T0 + 5},view,12\n"  # line 4
        "2,2024-13-45 99:00:00,view,13\n"  # line 5
        "3,nan,view,14\n"  # line 6
    )
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects).report
    assert report.rows_rejected == {"unparseable timestamp": 3}
    assert report.rows_used == 2
    _accounted(report)
    assert report.rejects_path == str(rejects)
    assert _rejects(rejects) == [
        (3, "unparseable timestamp"),
        (5, "unparseable timestamp"),
        (6, "unparseable timestamp"),
    ]


def test_future_timestamps_rejected(tmp_path: Path) -> None:
    text = HEADER + f"1,{T0},view,10\n1,4102444800,purchase,10\n2,2999-01-01T00:00:00,view,11\n"
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects).report
    assert report.rows_rejected == {"timestamp in the future": 2}
    assert report.rows_used == 1
    _accounted(report)
    assert _rejects(rejects) == [(3, "timestamp in the future"), (4, "timestamp in the future")]


def test_non_finite_timestamp_is_rejected(tmp_path: Path) -> None:
    text = HEADER + _rows(10) + "1,-inf,view,99\n"
    rejects = tmp_path / "rejects.csv"
    seqs, report, _ = load_sequences(_write(tmp_path, "events.csv", text), rejects_path=rejects)
    _accounted(report)
    assert np.isfinite(seqs.timestamps).all()
    assert report.rows_rejected == {"unparseable timestamp": 1}
    assert _rejects(rejects) == [(12, "unparseable timestamp")]


# ----------------------------------------------------------------------------- row-level rejects


def test_non_utf8_bytes_in_one_row(tmp_path: Path) -> None:
    data = (HEADER + f"1,{T0},view,10\n").encode() + f"2,{T0},vi".encode() + b"\xff\xfe"
    data += f"ew,10\n3,{T0},view,11\n".encode()
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", data), rejects_path=rejects).report
    assert report.rows_rejected == {"invalid UTF-8 bytes": 1}
    assert report.rows_used == 2
    _accounted(report)
    assert _rejects(rejects) == [(3, "invalid UTF-8 bytes")]


def test_line_over_4mb_is_rejected_as_line_too_long(tmp_path: Path) -> None:
    huge = "x" * (5 * 1024 * 1024)
    text = HEADER + f"1,{T0},view,10\n1,{T0 + 1},view,{huge}\n1,{T0 + 2},purchase,11\n"
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects).report
    assert report.rows_rejected == {"line too long": 1}
    assert report.rows_used == 2
    _accounted(report)
    assert _rejects(rejects) == [(3, "line too long")]


def test_negative_and_unparseable_price(tmp_path: Path) -> None:
    text = "customer_id,timestamp,action,item_id,price\n" + (
        f"1,{T0},view,10,9.99\n"
        f"1,{T0 + 1},view,11,-5\n"
        f"1,{T0 + 2},purchase,11,abc\n"
        f"1,{T0 + 3},purchase,12,\n"  # empty price is just unknown
    )
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects).report
    assert report.rows_rejected == {"negative price": 1, "unparseable price": 1}
    assert report.rows_used == 2
    _accounted(report)
    assert _rejects(rejects) == [(3, "negative price"), (4, "unparseable price")]


def _prices(tmp_path: Path, values: list[str], delim: str) -> tuple[list, IngestReport]:
    rows = "".join(
        f"1{delim}{T0 + i}{delim}view{delim}{10 + i}{delim}{v}\n" for i, v in enumerate(values)
    )
    head = delim.join(["customer_id", "timestamp", "action", "item_id", "price"]) + "\n"
    table = read_events(_write(tmp_path, "events.csv", head + rows))
    df = table.df().assign(item=lambda d: d["item_id"].astype(int)).set_index("item")
    return [df["price"].get(10 + i) for i in range(len(values))], table.report


@pytest.mark.parametrize(
    ("values", "delim", "expected", "convention"),
    [
        # One column, one convention: a US shop's "$1,299" is 1299, as "1,299.00" is.
        (["9.99", "$1,299", "1,299.00", "12 USD", "€ 7"], ";", [9.99, 1299, 1299, 12, 7], "point"),
        # A European shop's decimal commas: "1.234" is then 1234, "75,2" is 75.2.
        (
            ["75,2", "1.234,50", "1 234,50", "1.234", "9"],
            ";",
            [75.2, 1234.5, 1234.5, 1234, 9],
            "comma",
        ),
    ],
)
def test_local_price_spellings_are_read_by_the_column_convention(
    tmp_path: Path, values: list[str], delim: str, expected: list[float], convention: str
) -> None:
    """Prices with currency signs, decimal commas or thousands separators are kept, read by
    one convention for the whole column (never guessed value by value), and noted."""
    prices, report = _prices(tmp_path, values, delim)
    assert report.rows_rejected == {}
    assert prices == pytest.approx(expected)
    assert any(f"decimal {convention}" in n for n in report.notes), report.notes


def test_prices_that_are_not_prices_stay_rejected(tmp_path: Path) -> None:
    values = ["9.99", "12abc", "3/4", "(5.00)", "1,,2", "10%"]
    prices, report = _prices(tmp_path, values, ";")
    assert prices[0] == pytest.approx(9.99)
    assert report.rows_rejected == {"unparseable price": 5}


def test_mixed_decimal_separators_are_not_guessed(tmp_path: Path) -> None:
    prices, report = _prices(tmp_path, ["9.99", "9,99", "4"], ";")
    assert prices[0] == pytest.approx(9.99) and prices[2] == pytest.approx(4.0)
    assert report.rows_rejected == {"unparseable price": 1}
    assert any("mixes decimal commas and points" in n for n in report.notes)


def test_map_to_nothing_leaves_an_optional_column_out(tmp_path: Path) -> None:
    text = "customer_id,timestamp,action,item_id,price\n" + (
        f"1,{T0},view,10,abc\n1,{T0 + 1},view,11,-5\n"
    )
    path = _write(tmp_path, "events.csv", text)
    table = read_events(path, IngestConfig(column_map={"price": ""}))
    assert table.report.rows_rejected == {} and table.report.rows_used == 2
    assert table.df()["price"].isna().all()
    with pytest.raises(InputError, match="required column"):
        read_events(path, IngestConfig(column_map={"item_id": ""}))


def test_non_finite_price_is_rejected(tmp_path: Path) -> None:
    text = "customer_id,timestamp,action,item_id,price\n" + (
        f"1,{T0},view,10,1.5\n1,{T0 + 1},view,11,nan\n1,{T0 + 2},view,12,inf\n"
    )
    report = read_events(_write(tmp_path, "events.csv", text)).report
    _accounted(report)
    assert report.rows_rejected == {"unparseable price": 2}


def test_exact_duplicates_counted_not_rejected(tmp_path: Path) -> None:
    row = f"1,{T0},view,10\n"
    text = HEADER + row * 3 + f"1,{T0 + 60},purchase,10\n" + f"2,{T0},view,10\n" * 2
    seqs, report, _ = load_sequences(_write(tmp_path, "events.csv", text))
    assert report.rows_read == 6
    assert report.duplicates_dropped == 3
    assert report.rows_rejected == {}
    assert report.rows_used == 3
    _accounted(report)
    assert seqs.n_events == 3


def test_unsorted_input_is_sorted_and_reported(tmp_path: Path) -> None:
    text = HEADER + (
        f"1,{T0 + 300},purchase,12\n2,{T0},view,20\n1,{T0},view,10\n1,{T0 + 100},add_cart,11\n"
    )
    seqs, report, _ = load_sequences(_write(tmp_path, "events.csv", text))
    assert report.input_sorted is False
    assert any("not in time order" in note for note in report.notes)
    _accounted(report)
    row = seqs.vocab.customer_index("1")
    hist = seqs.history(row)
    assert [str(seqs.vocab.item_ids[i]) for i in hist["items"]] == ["10", "11", "12"]
    assert [seqs.vocab.action_names[a] for a in hist["actions"]] == ["view", "add_cart", "purchase"]
    assert hist["timestamps"].tolist() == [T0, T0 + 100, T0 + 300]
    assert hist["gaps"].tolist() == [0.0, 100.0, 200.0]


def test_empty_ids_and_fields_each_get_a_reason(tmp_path: Path) -> None:
    text = HEADER + (
        f",{T0},view,10\n"  # line 2
        f"1,{T0},view,\n"  # line 3
        f"   ,{T0},view,10\n"  # line 4: blank after trimming
        "1,,view,10\n"  # line 5
        f"1,{T0},,10\n"  # line 6
        f"1,{T0 + 60},view,11\n"  # line 7: fine
    )
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects).report
    assert report.rows_rejected == {
        "empty customer_id": 2,
        "empty item_id": 1,
        "empty timestamp": 1,
        "empty action": 1,
    }
    assert report.rows_used == 1
    _accounted(report)
    assert _rejects(rejects) == [
        (2, "empty customer_id"),
        (3, "empty item_id"),
        (4, "empty customer_id"),
        (5, "empty timestamp"),
        (6, "empty action"),
    ]


def test_unknown_action_rejected_in_strict_mode_kept_otherwise(tmp_path: Path) -> None:
    text = HEADER + f"1,{T0},view,10\n1,{T0 + 1},wishlist,11\n1,{T0 + 2},purchase,11\n"
    path = _write(tmp_path, "events.csv", text)

    rejects = tmp_path / "rejects.csv"
    strict = read_events(path, IngestConfig(strict_actions=True), rejects_path=rejects).report
    assert strict.rows_rejected == {"unknown action (strict mode)": 1}
    assert strict.rows_used == 2
    assert "wishlist" not in strict.actions
    _accounted(strict)
    assert _rejects(rejects) == [(3, "unknown action (strict mode)")]

    lenient = read_events(path).report
    assert lenient.rows_rejected == {}
    assert lenient.actions == {"view": 1, "wishlist": 1, "purchase": 1}
    assert any("wishlist" in note for note in lenient.notes)
    _accounted(lenient)


def test_too_many_and_too_few_fields(tmp_path: Path) -> None:
    text = HEADER + (
        f"1,{T0},view,10\n"  # line 2
        f"1,{T0 + 1},view,11,extra,more,most\n"  # line 3: one row, however many extras
        f"1,{T0 + 2},view\n"  # line 4
        f"1,{T0 + 3},view,12\n"  # line 5
        f"1,not-a-time,view,13\n"  # line 6: after the reader's own rejects
        f"1,{T0 + 5},view,14\n"  # line 7
    )
    rejects = tmp_path / "rejects.csv"
    seqs, report, _ = load_sequences(_write(tmp_path, "events.csv", text), rejects_path=rejects)
    assert report.rows_rejected == {
        "too many fields": 1,
        "too few fields": 1,
        "unparseable timestamp": 1,
    }
    assert report.rows_used == 3
    _accounted(report)
    # Rows the CSV reader skipped do not shift the line numbers of later rejects.
    assert _rejects(rejects) == [
        (3, "too many fields"),
        (4, "too few fields"),
        (6, "unparseable timestamp"),
    ]
    assert sorted(_ts_by_item(seqs)) == ["10", "12", "14"]


def test_blank_lines_do_not_shift_reject_line_numbers(tmp_path: Path) -> None:
    text = HEADER + f"1,{T0},view,10\n\n\n1,bad,view,11\n1,{T0 + 2},view,12\n"
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects).report
    assert report.rows_rejected == {"unparseable timestamp": 1}
    _accounted(report)
    assert _rejects(rejects) == [(5, "unparseable timestamp")]


def test_multiline_quoted_field_does_not_shift_reject_line_numbers(tmp_path: Path) -> None:
    text = HEADER + f'1,{T0},view,"10\n"\n1,bad,view,11\n1,{T0 + 2},view,12\n'
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects).report
    assert report.rows_rejected == {"unparseable timestamp": 1}
    _accounted(report)
    assert _rejects(rejects) == [(4, "unparseable timestamp")]


@pytest.mark.parametrize("name", ["events.csv", "events.csv.gz"])
def test_reader_and_value_rejects_name_file_lines_past_blank_lines_and_quoted_breaks(
    tmp_path: Path, name: str
) -> None:
    # Blank lines (skipped by the reader, counted in its own numbers) and a quoted line
    # break (not counted there) before both kinds of reject: the reader's (too many fields)
    # and ours (a bad timestamp).
    text = HEADER + (
        f"1,{T0},view,10\n\n\n"  # lines 2-4
        f'1,{T0 + 1},view,"11\n"\n'  # lines 5-6
        "1,2,3,4,5\n"  # line 7: too many fields
        f"1,bad,view,12\n"  # line 8
        f"1,{T0 + 3},view,13\n"  # line 9
    )
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    rejects = tmp_path / "rejects.csv"
    report = read_events(path, rejects_path=rejects).report
    _accounted(report)
    assert _rejects(rejects) == [(7, "too many fields"), (8, "unparseable timestamp")]


def test_a_quote_inside_a_field_does_not_shift_reject_line_numbers(tmp_path: Path) -> None:
    # `27" monitor` is plain text (a quote opens a field only at its start); with a blank
    # line after it the file's records have to be located, and that quote must not open one.
    text = HEADER + (
        f'1,{T0},view,27" monitor\n\n'  # lines 2-3
        f"1,{T0 + 1},view,11,extra\n"  # line 4: too many fields
        "1,bad,view,12\n"  # line 5
        f"1,{T0 + 3},view,13\n"
    )
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects).report
    _accounted(report)
    assert _rejects(rejects) == [(4, "too many fields"), (5, "unparseable timestamp")]


@pytest.mark.parametrize("name", ["events.CSV.GZ", "events.csv"])
def test_gzip_is_known_by_its_bytes_and_mixed_line_endings_are_read(
    tmp_path: Path, name: str
) -> None:
    # Some lines CRLF, some LF (a tool rewrote part of a Windows file); a gzip file whose
    # name does not say so.
    text = HEADER.replace("\n", "\r\n") + f"1,{T0},view,10\n1,{T0 + 1},view,11\r\n"
    text += f"1,{T0 + 2},view,12,extra\n"  # still rejected (line 4), not cut to fit
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()))
    rejects = tmp_path / "rejects.csv"
    report = read_events(path, rejects_path=rejects).report
    assert report.rows_used == 2 and report.rows_rejected == {"too many fields": 1}
    assert _rejects(rejects) == [(4, "too many fields")]


def test_a_seconds_value_in_a_milliseconds_column_is_rejected_not_dated_1970(
    tmp_path: Path,
) -> None:
    ms = T0 * 1000
    text = HEADER + f"1,{ms},view,10\n1,{ms + 60_000},view,11\n1,{T0 + 120},purchase,12\n"
    rejects = tmp_path / "rejects.csv"
    seqs, report, _ = load_sequences(_write(tmp_path, "events.csv", text), rejects_path=rejects)
    _accounted(report)
    assert [line for line, _ in _rejects(rejects)] == [4]
    assert "before 1990" in _rejects(rejects)[0][1]
    assert sorted(seqs.vocab.item_ids.tolist()) == ["10", "11"]


def test_a_json_array_file_is_read_whole(tmp_path: Path) -> None:
    rows = [
        {"customer_id": "1", "timestamp": T0 + i, "action": "view", "item_id": str(10 + i)}
        for i in range(3)
    ]
    pretty = json.dumps(rows, indent=2)  # "[", objects over several lines, "]"
    report = read_events(_write(tmp_path, "events.json", pretty)).report
    assert report.rows_read == 3 and report.rows_used == 3 and not report.rows_rejected
    # One broken element spoils the array: a clear error, not a half-read file.
    broken = pretty.replace('"view"', '"view",,', 1)
    with pytest.raises(InputError, match="cannot read the JSON array"):
        read_events(_write(tmp_path, "broken.json", broken))


def test_setting_typos_are_errors_not_silent_rejects(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", HEADER + _rows(3))
    with pytest.raises(InputError, match="did you mean 'add_cart'"):
        read_events(path, IngestConfig(action_map={"view": "add_crt"}))
    with pytest.raises(InputError, match="unknown --timestamp-unit 'bogus'"):
        read_events(path, IngestConfig(timestamp_unit="bogus"))
    # A new action name is allowed, even one that contains a canonical one.
    for name in ("wishlist", "repurchase"):
        assert read_events(path, IngestConfig(action_map={"view": name})).report.rows_used == 3


def test_utf16_file_is_named_as_such(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", (HEADER + _rows(2)).encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        read_events(path)


def test_zone_offsets_written_after_a_space_are_read(tmp_path: Path) -> None:
    text = HEADER + (
        "1,2024-01-01 10:00:00 +02:00,view,10\n"
        "1,2024-01-01 10:00:00 UTC,view,11\n"
        "1,2024-01-01 10:00:00 -0130,view,12\n"
    )
    table = read_events(_write(tmp_path, "events.csv", text))
    assert not table.report.rows_rejected
    ts = dict(table.df()[["item_id", "ts"]].values.tolist())
    assert ts == {"10": 1704096000.0, "11": 1704103200.0, "12": 1704108600.0}


@pytest.mark.parametrize("early", [False, True])
def test_a_stray_nul_byte_rejects_its_row(tmp_path: Path, early: bool) -> None:
    # Many NULs make a file binary; one, early (in the sniffed head) or late, is one bad row.
    bad = f"1,{T0 + 999_999},view,it\x00em\n"
    text = HEADER + (bad + _rows(3000) if early else _rows(3000) + bad)
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects).report
    _accounted(report)
    assert report.rows_rejected == {"NUL byte in an id": 1}
    assert _rejects(rejects) == [(2 if early else 3002, "NUL byte in an id")]


def test_nested_json_fields_are_mapped_by_a_dotted_path(tmp_path: Path) -> None:
    rows = [
        {"user": {"id": "c1"}, "t": T0 + i, "ev": {"type": a}, "sku": "i1"}
        for i, a in enumerate(["view", "purchase"])
    ]
    path = _write(tmp_path, "events.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    cfg = IngestConfig(
        column_map={
            "customer_id": "user.id",
            "timestamp": "t",
            "action": "ev.type",
            "item_id": "sku",
        }
    )
    table = read_events(path, cfg)
    assert table.report.rows_used == 2
    assert sorted(table.df()["action"]) == ["purchase", "view"]
    assert set(table.df()["customer_id"]) == {"c1"}


def test_malformed_quoting_does_not_reject_well_quoted_rows(tmp_path: Path) -> None:
    header = "customer_id,timestamp,action,item_id,category\n"
    good = "".join(f'{i},{T0 + i},view,{i},"shoes, size {i}"\n' for i in range(30))
    text = header + good + f'1,{T0 + 40},view,11,"bad"quote\n' + f"2,{T0 + 41},view,12,x\n"
    report = read_events(_write(tmp_path, "events.csv", text)).report
    _accounted(report)
    assert report.rows_rejected.get("too many fields", 0) == 0, report.rows_rejected
    assert report.rows_used >= 31


def test_numeric_ids_written_as_floats_equal_integers(tmp_path: Path) -> None:
    text = HEADER + (
        f"123.0,{T0},view,10.0\n"
        f"123,{T0 + 1},purchase,10\n"
        f"123.00,{T0 + 2},view,7.5\n"  # 7.5 is not an integer id: kept as written
    )
    seqs, report, _ = load_sequences(_write(tmp_path, "events.csv", text))
    assert report.rows_rejected == {} and report.duplicates_dropped == 0
    _accounted(report)
    assert list(seqs.vocab.customer_ids) == ["123"]
    assert sorted(seqs.vocab.item_ids.tolist()) == ["10", "7.5"]
    assert seqs.lengths.tolist() == [3]


def test_dataframe_float_ids_and_missing_values(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": [123.0, 123.0, np.nan, 7.0],
            "timestamp": [T0, T0 + 60, T0 + 120, T0 + 180],
            "action": ["view", "purchase", "view", "view"],
            "item_id": [10.0, 10.0, 11.0, np.nan],
        }
    )
    rejects = tmp_path / "rejects.csv"
    seqs, report, _ = load_sequences(frame, rejects_path=rejects)
    assert report.rows_rejected == {"empty customer_id": 1, "empty item_id": 1}
    assert report.rows_used == 2
    _accounted(report)
    assert _rejects(rejects) == [(3, "empty customer_id"), (4, "empty item_id")]
    assert list(seqs.vocab.customer_ids) == ["123"]
    assert list(seqs.vocab.item_ids) == ["10"]


# ----------------------------------------------------------------------------- JSON Lines


def test_malformed_json_lines_counted_with_lines(tmp_path: Path) -> None:
    text = (
        f'{{"customer_id":"1","timestamp":{T0},"action":"view","item_id":"10"}}\n'  # line 1
        f'{{"customer_id":"1","timestamp":{T0 + 1},"action":"purchase"\n'  # line 2: cut off
        "\n"  # line 3: blank lines are skipped, not rejected
        f'{{"customer_id":1,"timestamp":{T0 + 2},"action":"purchase","item_id":10}}\n'  # 4
        "not json at all\n"  # line 5
        f'{{"customer_id":"2","timestamp":"bad","action":"view","item_id":"10"}}\n'  # line 6
    )
    rejects = tmp_path / "rejects.csv"
    seqs, report, _ = load_sequences(_write(tmp_path, "events.jsonl", text), rejects_path=rejects)
    assert report.rows_rejected == {"malformed JSON line": 2, "unparseable timestamp": 1}
    assert report.rows_used == 2
    _accounted(report)
    assert _rejects(rejects) == [
        (2, "malformed JSON line"),
        (5, "malformed JSON line"),
        (6, "unparseable timestamp"),
    ]
    assert seqs.timestamps.tolist() == [float(T0), float(T0 + 2)]


def test_jsonl_without_any_object(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.jsonl", "nope\n[1, 2\n")
    with pytest.raises(InputError, match="no JSON objects found") as info:
        read_events(path)
    assert info.value.expected == "one JSON object per line"


def test_jsonl_non_object_lines_get_a_json_reason(tmp_path: Path) -> None:
    text = (
        "[1, 2, 3]\n"
        f'{{"customer_id":"1","timestamp":{T0},"action":"view","item_id":"10"}}\n'
        '"just a string"\n'
    )
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.jsonl", text), rejects_path=rejects).report
    _accounted(report)
    assert report.rows_used == 1
    reasons = _rejects(rejects)
    assert [line for line, _ in reasons] == [1, 3]
    assert all("JSON" in reason for _, reason in reasons), reasons


def test_jsonl_invalid_utf8_in_one_line(tmp_path: Path) -> None:
    data = (
        f'{{"customer_id":"1","timestamp":{T0},"action":"view","item_id":"10"}}\n'.encode()
        + f'{{"customer_id":"1","timestamp":{T0 + 1},"action":"vi'.encode()
        + b"\xff\xfe"
        + b'ew","item_id":"10"}\n'
        + f'{{"customer_id":"2","timestamp":{T0 + 2},"action":"view","item_id":"10"}}\n'.encode()
    )
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.jsonl", data), rejects_path=rejects).report
    assert report.rows_rejected == {"invalid UTF-8 bytes": 1}
    assert report.rows_used == 2
    _accounted(report)
    assert _rejects(rejects) == [(2, "invalid UTF-8 bytes")]


# ----------------------------------------------------------------------------- gzip


def _gz_events(n: int) -> bytes:
    rows = "".join(f"{i % 50},{T0 + i},view,{i % 97}\n" for i in range(n))
    return gzip.compress((HEADER + rows).encode(), mtime=0)


def test_gzip_truncated_after_the_sniffed_head(tmp_path: Path) -> None:
    data = _gz_events(20_000)
    path = _write(tmp_path, "events.csv.gz", data[: len(data) // 2])
    with pytest.raises(InputError, match=r"(?i)end of gzip stream") as info:
        read_events(path)
    assert info.value.path == str(path)


def test_gzip_truncated_inside_the_sniffed_head(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv.gz", _gz_events(3)[:30])
    with pytest.raises(InputError, match="cannot read file"):
        read_events(path)


def test_gz_suffix_on_plain_text_is_read_as_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv.gz", (HEADER + _rows(2)).encode())
    assert read_events(path).report.rows_used == 2


def test_gzip_with_corrupt_deflate_data(tmp_path: Path) -> None:
    data = _gz_events(20_000)
    path = _write(tmp_path, "events.csv.gz", data[:20] + b"\xde\xad\xbe\xef" * 50 + data[220:])
    with pytest.raises(InputError, match="cannot read file") as info:
        read_events(path)
    assert info.value.path == str(path)


# ----------------------------------------------------------------------------- CLI


def _cli(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_cli_unknown_layout(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", HEADER + _rows(2))
    code, out, err = _cli(
        "inspect", str(path), "--layout", "amazon", "--rejects", str(tmp_path / "r.csv")
    )
    assert code == 2
    assert err.startswith("error:")
    assert "unknown layout 'amazon'" in err and "rees46" in err
    assert "Traceback" not in out + err


def test_cli_map_to_nonexistent_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", HEADER + _rows(2))
    code, _, err = _cli(
        "inspect", str(path), "--map", "customer_id=visitor", "--rejects", str(tmp_path / "r.csv")
    )
    assert code == 2
    assert "error: --map customer_id=visitor: no such column" in err
    assert "found: columns ['customer_id', 'timestamp', 'action', 'item_id']" in err


def test_cli_map_without_equals_sign(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", HEADER + _rows(2))
    code, _, err = _cli("inspect", str(path), "--map", "customer_id")
    assert code == 2
    assert "--map expects KEY=VALUE, got 'customer_id'" in err


def test_cli_binary_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "events.csv", b"\x00\x01\x02\xff" * 100)
    code, out, err = _cli("inspect", str(path))
    assert code == 2
    assert "error: file looks binary" in err
    assert out == ""
    assert not (tmp_path / "events.csv.rejects.csv").exists()


def test_cli_strict_json_counts_and_rejects_file(tmp_path: Path) -> None:
    text = HEADER + f"1,{T0},view,10\n1,{T0 + 1},wishlist,11\n1,{T0 + 1},wishlist,11\n"
    text += f"1,{T0 + 2},view,10\n1,{T0 + 2},view,10\n"
    path = _write(tmp_path, "events.csv", text)
    rejects = tmp_path / "rejects.csv"
    code, out, err = _cli("inspect", str(path), "--json", "--strict", "--rejects", str(rejects))
    assert code == 0, err
    ingest = json.loads(out)["ingest"]
    assert ingest["rows_read"] == 5
    assert ingest["rows_rejected"] == {"unknown action (strict mode)": 2}
    assert ingest["duplicates_dropped"] == 1
    assert ingest["rows_used"] == 2
    assert ingest["rejects_path"] == str(rejects)
    # Dropped duplicates are listed too (counted apart), so every missing row can be found.
    assert _rejects(rejects) == [
        (3, "unknown action (strict mode)"),
        (4, "unknown action (strict mode)"),
        (6, "duplicate of an earlier row in every column read (dropped)"),
    ]


def test_unclosed_quote_says_how_many_lines_it_took(tmp_path: Path) -> None:
    """An opening quote that never closes takes the rest of the file into one bad row: the
    report says how many lines went with it, so they are not silently lost."""
    rows = [f"1,{T0 + i},view,{10 + i}\n" for i in range(5)]
    text = HEADER + rows[0] + f'1,"{T0 + 9},view,99\n' + "".join(rows[1:])
    report = read_events(_write(tmp_path, "events.csv", text)).report
    assert report.n_rejected == 1
    assert any("ran over the next 4 line(s)" in n for n in report.notes), report.notes


def test_implausibly_early_dates_are_noted(tmp_path: Path) -> None:
    text = HEADER + f"1,{T0},view,10\n1,5,view,11\n"
    report = read_events(_write(tmp_path, "events.csv", text)).report
    assert report.rows_used == 2
    assert any("dated before 1990" in n for n in report.notes), report.notes


def test_hash_is_data_and_preamble_lines_are_skipped_with_true_line_numbers(
    tmp_path: Path,
) -> None:
    """'#' starts no comment (ids and values keep it); title lines before the header are
    skipped, reported, and rejects still name the lines an editor shows."""
    text = (
        "# export of 2024-01-01\n"  # line 1
        "Shop X events\n"  # line 2
        + HEADER  # line 3
        + f"c1,{T0},view,i1\n"  # line 4
        f"#42,{T0 + 50},view,i9\n"  # line 5: a customer called '#42'
        f"c1,{T0 + 100},purchase,i1\n"  # line 6
        "c2,bad,view,i2\n"  # line 7
        f"c3,{T0},view,i3 # promo\n"  # line 8
    )
    rejects = tmp_path / "rejects.csv"
    res = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects)
    report = res.report
    _accounted(report)
    assert report.rows_read == 5 and report.rows_used == 4
    assert _rejects(rejects) == [(7, "unparseable timestamp")]
    ev = res.con.execute("SELECT customer_id, item_id FROM events").df()
    assert set(ev["customer_id"]) == {"c1", "#42", "c3"}
    assert "i3 # promo" in set(ev["item_id"])
    assert any("skipped 2 line(s) before the header" in n for n in report.notes)


def test_excel_sep_line_names_the_delimiter(tmp_path: Path) -> None:
    text = "sep=;\ncustomer_id;timestamp;action;item_id\n" + f"c1;{T0};view;i1\nc1;x;view;i2\n"
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects).report
    assert report.rows_used == 1 and _rejects(rejects) == [(4, "unparseable timestamp")]


def test_reusing_an_output_folder_never_mixes_runs(tmp_path: Path) -> None:
    """A clean re-run removes the earlier rejects; a failed one leaves the earlier run's
    files as they were and writes its own rejects to rejects.failed.csv."""
    out = tmp_path / "out"
    messy = _write(tmp_path, "messy.csv", HEADER + _rows(3) + "2,bad,view,9\n")
    clean = _write(tmp_path, "clean.csv", HEADER + _rows(4))
    hopeless = _write(tmp_path, "hopeless.csv", HEADER + "1,bad,view,9\n1,worse,view,8\n")
    assert runner.invoke(app, ["ingest", str(messy), "--out", str(out)]).exit_code == 0
    assert _rejects(out / "rejects.csv") == [(5, "unparseable timestamp")]
    assert runner.invoke(app, ["ingest", str(clean), "--out", str(out)]).exit_code == 0
    assert not (out / "rejects.csv").exists()
    report = (out / "ingest_report.json").read_text()
    res = runner.invoke(app, ["ingest", str(hopeless), "--out", str(out)])
    assert res.exit_code == 2 and "rejects.failed.csv" in res.output, res.output
    assert (out / "ingest_report.json").read_text() == report
    assert not (out / "rejects.csv").exists()
    assert [r for r, _ in _rejects(out / "rejects.failed.csv")] == [2, 3]
    assert runner.invoke(app, ["ingest", str(clean), "--out", str(out)]).exit_code == 0
    assert not (out / "rejects.failed.csv").exists()


def test_null_markers_are_not_ids(tmp_path: Path) -> None:
    text = HEADER + f"c1,{T0},view,i1\nNaN,{T0},view,i2\nnull,{T0 + 9},view,i3\nc2,{T0},view,None\n"
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects).report
    _accounted(report)
    assert report.rows_used == 1
    assert _rejects(rejects) == [
        (3, "customer_id is a null marker"),
        (4, "customer_id is a null marker"),
        (5, "item_id is a null marker"),
    ]


def test_unknown_date_format_and_latin1_get_a_way_out(tmp_path: Path) -> None:
    eu = _write(tmp_path, "eu.csv", HEADER + "c1,14/11/2023 10:00,view,i1\n")
    with pytest.raises(InputError, match="--timestamp-unit") as info:
        read_events(eu)
    assert "'14/11/2023 10:00'" in str(info.value)
    latin = _write(tmp_path, "latin.csv", HEADER.encode() + b"caf\xe9,1700000000,view,i1\n")
    with pytest.raises(InputError, match="iconv"):
        read_events(latin)


def test_rejects_show_the_line_as_the_file_holds_it(tmp_path: Path) -> None:
    text = (
        b"customer_id;timestamp;action;item_id\n"
        b"c1;1700000000;view;i1\n"
        b'c1;bad;view;"i;2"\n'
        b"caf\xe9;1700000000;view;i1\n"
        b"c2;1700000100;purchase;i1\n"
    )
    rejects = tmp_path / "rejects.csv"
    read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects)
    with open(rejects, newline="", encoding="utf-8") as fh:
        raw = [row["raw"] for row in csv.DictReader(fh)]
    assert raw == ['c1;bad;view;"i;2"', "caf\\xe9;1700000000;view;i1"]


def test_a_repeated_header_column_is_noted(tmp_path: Path) -> None:
    text = "customer_id,timestamp,action,item_id,customer_id\n" + f"c1,{T0},view,i1,x\n"
    report = read_events(_write(tmp_path, "events.csv", text)).report
    assert any("repeats column(s) 'customer_id'" in n for n in report.notes)


def test_new_action_types_are_named_only_from_used_rows(tmp_path: Path) -> None:
    text = HEADER + f"c1,{T0},view,i1\n" + HEADER + f"c1,{T0 + 9},wishlist,i2\n"
    report = read_events(_write(tmp_path, "events.csv", text)).report
    kept = [n for n in report.notes if n.startswith("kept as action types")]
    assert kept == ["kept as action types of their own: wishlist"]


def test_a_list_column_is_not_an_id_column(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"customer_id": ["c1"], "timestamp": [T0], "action": ["view"], "item_id": [[1, 2]]}
    )
    frame.to_parquet(tmp_path / "events.parquet")
    with pytest.raises(InputError, match="holds BIGINT\\[\\] values") as info:
        read_events(tmp_path / "events.parquet")
    assert info.value.column == "item_id"


def test_rejects_never_replace_the_input_or_a_file_we_did_not_write(tmp_path: Path) -> None:
    events = _write(tmp_path, "rejects.csv", HEADER + _rows(3))
    with pytest.raises(InputError, match="would overwrite the input"):
        read_events(events, rejects_path=events)
    assert events.read_text() == HEADER + _rows(3)
    mine = _write(tmp_path, "notes.csv", "my own notes\n")
    read_events(_write(tmp_path, "clean.csv", HEADER + _rows(3)), rejects_path=mine)
    assert mine.read_text() == "my own notes\n"  # not ours to remove: it is no rejects file


@pytest.mark.parametrize(
    "before",
    ["Sales export\n\n", "Sales export\n\n\n", "# report\n# of March\n\n", "Title\r\n"],
)
def test_preamble_with_blank_lines_or_other_line_endings_keeps_true_lines(
    tmp_path: Path, before: str
) -> None:
    rows = [f"c1,{T0},view,i1", "c1,bad,view,i2", f"c2,{T0 + 5},purchase,i3"]
    end = "\r\n" if "\r" in before else "\n"
    text = before + HEADER + rows[0] + end + rows[1] + "\n" + rows[2] + end
    rejects = tmp_path / "rejects.csv"
    report = read_events(_write(tmp_path, "events.csv", text), rejects_path=rejects).report
    bad_line = text.replace("\r\n", "\n").split("\n").index(rows[1]) + 1
    assert report.rows_used == 2 and _rejects(rejects) == [(bad_line, "unparseable timestamp")]


def test_lines_starting_with_hash_that_hold_fields_are_not_skipped(tmp_path: Path) -> None:
    text = "#customer_id,timestamp,action,item_id\n" + f"c1,{T0},view,i1\n"
    with pytest.raises(InputError, match="missing required column") as info:
        read_events(_write(tmp_path, "events.csv", text))
    assert "#customer_id" in str(info.value)  # --map customer_id=#customer_id reads it
    plain = _write(tmp_path, "plain.csv", f"#42,{T0},view,i9\nc1,{T0},view,i1\n")
    cfg = IngestConfig(
        has_header=False,
        column_map={
            "customer_id": "column0",
            "timestamp": "column1",
            "action": "column2",
            "item_id": "column3",
        },
    )
    assert read_events(plain, cfg).report.rows_used == 2
