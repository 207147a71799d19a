"""Ingestion: raw files of any supported layout -> validated canonical events (DuckDB)."""

from funnelrec.ingest.layouts import LAYOUTS, Layout
from funnelrec.ingest.reader import EventTable, IngestReport, read_events

__all__ = ["LAYOUTS", "EventTable", "IngestReport", "Layout", "read_events"]
