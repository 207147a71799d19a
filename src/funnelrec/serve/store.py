"""Durable event store: SQLite in WAL mode; an event is acknowledged only once committed.

Why SQLite: embedded (no server to run), one file, transactions that survive a killed process
(WAL + `synchronous=FULL` also survives power loss), and readers that do not block the writer.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    action TEXT NOT NULL,
    timestamp REAL NOT NULL,
    category TEXT,
    brand TEXT,
    price REAL,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_customer ON events (customer_id, id);
"""
COLUMNS = ("customer_id", "item_id", "action", "timestamp", "category", "brand", "price")


class EventStore:
    """Append-only event log in one SQLite file, safe to share between threads."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute(f"PRAGMA synchronous={synchronous}")
        self._con.executescript(SCHEMA)
        self._count = int(self._con.execute("SELECT count(*) FROM events").fetchone()[0])

    def append(self, events: list[dict]) -> list[int]:
        """Commit `events` in one transaction; returns their ids (after the commit)."""
        if not events:
            return []
        now = time.time()
        rows = [(*(e.get(c) for c in COLUMNS), now) for e in events]
        with self._lock:
            cur = self._con.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                ids = []
                for row in rows:
                    cur.execute(
                        f"INSERT INTO events ({', '.join(COLUMNS)}, received) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        row,
                    )
                    ids.append(int(cur.lastrowid))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            self._count += len(ids)
        return ids

    def count(self) -> int:
        """Events stored (kept in memory: this process is the only writer)."""
        return self._count

    def events(self, customer_id: str | None = None) -> pd.DataFrame:
        """Stored events in arrival order (all customers, or one)."""
        sql = f"SELECT id, {', '.join(COLUMNS)} FROM events"
        args: tuple = ()
        if customer_id is not None:
            sql += " WHERE customer_id = ?"
            args = (customer_id,)
        with self._lock:
            return pd.read_sql_query(sql + " ORDER BY id", self._con, params=args)

    def close(self) -> None:
        with self._lock:
            self._con.close()
